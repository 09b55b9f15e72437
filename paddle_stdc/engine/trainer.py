"""The training loop, in small pieces, with PaddleSeg's trainer contract.

Contract kept from PaddleSeg 2.8: config keys, ``save_dir/iter_N/{model.pdparams,model.pdopt}``,
``best_model/``, ``keep_checkpoint_max``, VisualDL tags (``Train/loss``, ``Train/loss_<i>``,
``Train/lr``, ``Train/batch_cost``, ``Train/reader_cost``, ``Evaluate/mIoU``, ``Evaluate/Acc``)
and the ``[TRAIN]`` log line, plus at every evaluation the per-class IoU table in the log and
``Evaluate/IoU/<class>`` scalars (named by the dataset's class names); ``--use_ema``
(``iter_N/ema_model.pdparams``, ``ema_best_model/ema_model.pdparams``, ``Evaluate/Ema_mIoU``,
``Evaluate/Ema_Acc``) and ``--profiler_options``. Differences: it runs on Paddle 3, tells
losses the iteration (``set_iteration``, e.g. the decayed detail-loss kernel), writes
checkpoints atomically, resumes the data order and the EMA exactly, and stops on a NaN/Inf
loss.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from paddle_stdc.data.loading import build_train_loader, check_batch_labels, raise_if_failed
from paddle_stdc.data.palettes import config_class_names
from paddle_stdc.engine.checkpoint import (
    TrainState,
    load_checkpoint,
    prune_checkpoints,
    save_best_ema_model,
    save_best_model,
    save_checkpoint,
)
from paddle_stdc.engine.config import Builder
from paddle_stdc.engine.evaluator import EvalResult, evaluate
from paddle_stdc.engine.logging import ProgressMeter, VisualDLWriter, log_class_table
from paddle_stdc.engine.runtime import (
    AmpSettings,
    ModelEMA,
    ProfilerOptions,
    ProfilerOptionsError,
    TrainProfiler,
    applied_cpu_threads,
    configure_cpu_threads,
    dist_info,
    fingerprint,
    sync_buffers,
)
from paddle_stdc.engine.validate import check_loss_count, validate_config
from paddle_stdc.losses.mixed_loss import MixedLoss

logger = logging.getLogger("paddle_stdc")


@dataclass
class TrainOptions:
    """Run options (the CLI flags of ``tools/train.py``); model/data/optimizer come from YAML."""

    save_dir: str = "output"
    save_interval: int = 1000
    log_iters: int = 10
    num_workers: int = 0
    do_eval: bool = False
    use_vdl: bool = False
    resume_model: Optional[str] = None
    keep_checkpoint_max: int = 5
    seed: Optional[int] = None
    precision: str = "fp32"
    amp_level: str = "O1"
    num_vis: int = 3
    eval_kwargs: Dict[str, Any] = field(default_factory=dict)
    use_ema: bool = False
    profiler_options: Optional[str] = None
    #: compute threads on CPU (None: the cores this process may use, less loader workers;
    #: see :func:`paddle_stdc.engine.runtime.plan_cpu_threads`)
    cpu_threads: Optional[int] = None

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> TrainOptions:
        """Run options a config carries (``precision``, ``amp_level``, ``test_config``), then
        ``overrides`` (e.g. the CLI's flags; a None value keeps the config's), so
        ``tools/train.py`` and a Python caller of :func:`train` run the same config alike."""
        dic = cfg.dic if hasattr(cfg, "dic") else dict(cfg)
        from_cfg: Dict[str, Any] = {
            "precision": dic.get("precision", "fp32"),
            "amp_level": dic.get("amp_level", "O1"),
            "eval_kwargs": dict(dic.get("test_config", {}) or {}),
        }
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"TrainOptions has no option {', '.join(unknown)}")
        from_cfg.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**from_cfg)


@dataclass
class TrainResult:
    state: TrainState
    last_eval: Optional[EvalResult]
    save_dir: Path
    last_ema_eval: Optional[EvalResult] = None
    ema: Optional[ModelEMA] = None


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and Paddle RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def output_names(model: nn.Layer, count: int) -> List[str]:
    names = getattr(model, "train_output_names", None)
    return list(names) if names is not None else [f"output_{i}" for i in range(count)]


def compute_losses(
    outputs: Sequence[paddle.Tensor], label: paddle.Tensor, losses: Dict[str, list], model=None
) -> List[paddle.Tensor]:
    """One weighted loss per training output: ``coef[i] * types[i](outputs[i], label)``; a
    ``MixedLoss`` gives ``coef[i]`` times each of its weighted parts (PaddleSeg's list)."""
    types, coefs = losses["types"], losses["coef"]
    if len(outputs) != len(types) or len(coefs) != len(types):
        names = output_names(model, len(outputs)) if model is not None else []
        raise ValueError(
            f"the model returns {len(outputs)} training outputs {names} but the config's "
            f"`loss.types` has {len(types)} entries and `loss.coef` {len(coefs)}; give one "
            "loss and one coefficient per output"
        )
    loss_list = []
    for out, loss_fn, coef in zip(outputs, types, coefs):
        if isinstance(loss_fn, MixedLoss):
            loss_list += [coef * part for part in loss_fn.weighted_parts(out, label)]
        else:
            loss_list.append(coef * loss_fn(out, label))
    return loss_list


def iteration_hooks(losses: Dict[str, list]) -> List[nn.Layer]:
    """Loss layers (``MixedLoss`` members included) with a ``set_iteration(step)`` hook."""
    hooks = []
    for loss in losses["types"]:
        layers = [loss, *loss.sublayers()] if isinstance(loss, nn.Layer) else [loss]
        hooks += [layer for layer in layers if callable(getattr(layer, "set_iteration", None))]
    return hooks


def schedule_lrs(builder: Builder) -> List[float]:
    """The learning rate of every update of the run, from a fresh copy of its scheduler."""
    sched, lrs = builder.new_lr_scheduler(), []
    for _ in range(builder.config.iters):
        lrs.append(float(sched()))
        sched.step()
    return lrs


def bind_schedules(builder: Builder, hooks: Sequence[nn.Layer]) -> None:
    """Give losses that follow the optimizer (``kernel_decay``) its learning rates, weight
    decay and momentum."""
    binders = [h for h in hooks if getattr(h, "kernel_decay", False)]
    if not binders:
        return
    opt_cfg, lrs = builder.config.optimizer_cfg, schedule_lrs(builder)
    weight_decay = float(opt_cfg.get("weight_decay") or 0.0)
    momentum = float(opt_cfg.get("momentum") or 0.0)
    for hook in binders:
        hook.bind_schedule(lrs, weight_decay, momentum)


def train_step(
    model: nn.Layer,
    losses: Dict[str, list],
    optimizer: paddle.optimizer.Optimizer,
    images: paddle.Tensor,
    labels: paddle.Tensor,
    amp: AmpSettings,
) -> List[paddle.Tensor]:
    """Forward, backward and one optimizer update; returns the detached per-output losses."""
    with amp.autocast():
        outputs = model(images)
        loss_list = compute_losses(outputs, labels, losses, getattr(model, "_layers", model))
        total = paddle.add_n(loss_list)
    if amp.scaler is not None:
        scaled = amp.scaler.scale(total)
        scaled.backward()
        amp.scaler.minimize(optimizer, scaled)
    else:
        total.backward()
        optimizer.step()
    optimizer.clear_grad()
    return [loss.detach() for loss in loss_list]


def _lr_step(optimizer: paddle.optimizer.Optimizer) -> None:
    sched = optimizer._learning_rate
    if isinstance(sched, paddle.optimizer.lr.LRScheduler):
        sched.step()


def _evaluate(model: nn.Layer, val_dataset, options: TrainOptions, num_vis: int) -> EvalResult:
    return evaluate(
        model,
        val_dataset,
        num_workers=min(options.num_workers, 1),
        num_vis=num_vis,
        precision=options.precision,
        cpu_threads=applied_cpu_threads(),  # keep the training's threads
        **options.eval_kwargs,
    )


def _evaluate_and_log(model, val_dataset, options, writer, it, class_names=None) -> EvalResult:
    """Evaluate; log the per-class table and write the scalars (mIoU, Acc, IoU per class)."""
    result = _evaluate(model, val_dataset, options, options.num_vis)
    model.train()
    if dist_info().is_main:
        log_class_table(result.metrics, class_names)
    writer.scalar("Evaluate/mIoU", result.miou, it)
    writer.scalar("Evaluate/Acc", result.acc, it)
    writer.class_scalars(result.metrics.class_iou, it, class_names)
    writer.eval_images(result, val_dataset, it)
    return result


def _evaluate_ema(ema: ModelEMA, val_dataset, options, writer, it) -> EvalResult:
    """PaddleSeg 2.8 evaluates the EMA model too and logs ``Evaluate/Ema_mIoU``/``Ema_Acc``."""
    result = _evaluate(ema.model, val_dataset, options, 0)
    writer.scalar("Evaluate/Ema_mIoU", result.miou, it)
    writer.scalar("Evaluate/Ema_Acc", result.acc, it)
    logger.info("[EVAL] EMA model: mIoU %.4f, Acc %.4f", result.miou, result.acc)
    return result


def _unchecked_label_range(dataset: Any) -> Optional[Tuple[int, int]]:
    """(num_classes, ignore_index) for checking each batch's labels before the loss, or None
    when the dataset checks every sample itself (ours: the error names the file)."""
    if getattr(dataset, "checks_labels", False):
        return None
    num_classes = getattr(dataset, "num_classes", None)
    if num_classes is None:
        return None
    return int(num_classes), int(getattr(dataset, "ignore_index", 255))


def _make_profiler(options: TrainOptions, remaining: int, rank: int) -> Optional[TrainProfiler]:
    """The profiler of ``--profiler_options``; its batch range must end within the run."""
    if options.profiler_options is None:
        return None
    parsed = ProfilerOptions.parse(options.profiler_options)
    start, end = parsed.batch_range
    if end > remaining:
        raise ProfilerOptionsError(
            f"profiler option batch_range=[{start},{end}] ends after the {remaining} "
            "iterations this run has left; lower its end or raise --iters"
        )
    return TrainProfiler(parsed, rank)


def train(builder: Builder, options: TrainOptions) -> TrainResult:
    """Train ``builder``'s model on its train dataset for ``builder.config.iters`` steps."""
    info = dist_info()
    if options.seed is not None:
        set_seed(options.seed + info.rank)
    save_dir = Path(options.save_dir)
    validate_config(builder.config)
    if options.profiler_options is not None:
        ProfilerOptions.parse(options.profiler_options)  # fail before building anything
    configure_cpu_threads(options.cpu_threads, options.num_workers, info.world_size)
    model = builder.model
    check_loss_count(model, builder.loss)
    amp = AmpSettings.create(options.precision, options.amp_level)
    model = info.prepare_model(model)  # SyncBN + DataParallel when running multi-process
    losses = builder.loss
    optimizer = builder.optimizer
    hooks = iteration_hooks(losses)
    bind_schedules(builder, hooks)
    iters, batch_size = builder.config.iters, builder.config.batch_size

    seed = options.seed if options.seed is not None else random.randrange(2**31)
    state = TrainState(data_seed=seed)
    ema = ModelEMA(builder.model) if options.use_ema else None
    if options.resume_model:
        state = load_checkpoint(
            options.resume_model, builder.model, optimizer,
            ema=ema.model if ema is not None else None,
        )  # fmt: skip
        logger.info("Resumed from %s at iteration %d", options.resume_model, state.iteration)
    profiler = _make_profiler(options, iters - state.iteration, info.rank)

    val_dataset = builder.val_dataset if options.do_eval else None
    train_dataset = builder.train_dataset
    loader = build_train_loader(
        train_dataset, batch_size, options.num_workers, state.iteration, state.data_seed
    )
    label_range = _unchecked_label_range(train_dataset)
    writer = VisualDLWriter(
        save_dir, options.use_vdl and info.is_main, builder.config.dic.get("palette")
    )
    meter = ProgressMeter(iters, batch_size, steps_per_epoch=len(loader.batch_sampler))
    evals: Dict[str, Optional[EvalResult]] = {"model": None, "ema": None}
    model.train()
    tic = time.time()
    try:
        for it, data in zip(range(state.iteration + 1, iters + 1), loader):
            meter.reader_done(time.time() - tic)
            labels = raise_if_failed(data)["label"]
            if label_range is not None:
                check_batch_labels(labels, *label_range, f"the training batch of iteration {it}")
            labels = labels.astype("int64")
            # Dropout draws from Paddle's generator: seed it per step so a resumed run matches.
            paddle.seed((state.data_seed * 1_000_003 + it * 7919 + info.rank) % 2**31)
            for hook in hooks:
                hook.set_iteration(it - 1)  # updates done before this step
            loss_list = train_step(model, losses, optimizer, data["img"], labels, amp)
            lr = optimizer.get_lr()
            _lr_step(optimizer)
            stop = profiler.step() if profiler is not None else False
            values = [float(v) for v in loss_list]
            if not all(math.isfinite(v) for v in values):
                raise FloatingPointError(
                    f"loss became {values} at iteration {it}; stopped without saving. The last "
                    f"good checkpoint is the newest iter_N under {save_dir}."
                )
            state.iteration = it
            meter.step_done(time.time() - tic, values, lr)
            if it % options.log_iters == 0 and info.is_main:
                writer.train_scalars(meter.flush(it), it)
            if ema is not None:
                ema.update(builder.model, it)
            if it % options.save_interval == 0 or it == iters:
                _save_point(builder, model, optimizer, state, options, writer, val_dataset,
                            ema, evals)  # fmt: skip
            if stop:
                logger.info(
                    "[PROFILER] stopping after iteration %d (exit_on_finished, PaddleSeg's "
                    "default; add exit_on_finished=false to --profiler_options to go on)", it
                )  # fmt: skip
                break
            tic = time.time()
    finally:
        if profiler is not None:
            profiler.close()
        writer.close()
    logger.info(
        "[TRAIN] done at iteration %d; rank %d fingerprints: parameters %s, buffers %s",
        state.iteration, info.rank, fingerprint(builder.model),
        fingerprint(builder.model, buffers=True),
    )  # fmt: skip
    return TrainResult(state, evals["model"], save_dir, evals["ema"], ema)


def _save_point(builder, model, optimizer, state, options, writer, val_dataset, ema, evals):
    """Evaluate (the model, and the EMA model with ``--use_ema``) and save a checkpoint."""
    it = state.iteration
    sync_buffers(builder.model)
    if ema is not None:
        sync_buffers(ema.model)
    if val_dataset is not None:
        names = config_class_names(builder.config.dic)  # checked by validate_config
        evals["model"] = _evaluate_and_log(model, val_dataset, options, writer, it, names)
        if ema is not None:
            evals["ema"] = _evaluate_ema(ema, val_dataset, options, writer, it)
    if dist_info().is_main:
        _checkpoint(Path(options.save_dir), builder, optimizer, state, evals, options, ema)


def _checkpoint(save_dir, builder, optimizer, state, evals, options, ema) -> None:
    result, ema_result = evals["model"], evals["ema"]
    if result is not None and result.miou > state.best_miou:
        state.best_miou, state.best_iter = float(result.miou), state.iteration
        save_best_model(save_dir, builder.model)
    if ema_result is not None and ema_result.miou > state.best_ema_miou:
        state.best_ema_miou, state.best_ema_iter = float(ema_result.miou), state.iteration
        save_best_ema_model(save_dir, ema.model)
    save_checkpoint(
        save_dir,
        builder.model,
        optimizer,
        state,
        ema=ema.model if ema is not None else None,
    )
    prune_checkpoints(save_dir, options.keep_checkpoint_max)
    if result is not None:
        logger.info(
            "[EVAL] The model with the best validation mIoU (%.4f) was saved at iter %d.",
            state.best_miou,
            state.best_iter,
        )
    if ema_result is not None:
        logger.info(
            "[EVAL] The EMA model with the best validation mIoU (%.4f) was saved at iter %d.",
            state.best_ema_miou,
            state.best_ema_iter,
        )
