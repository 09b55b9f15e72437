"""Checkpoints with PaddleSeg's layout, written atomically.

Layout (as PaddleSeg's trainer)::

    save_dir/iter_N/model.pdparams      model weights (loadable by PaddleSeg's STDCSeg)
    save_dir/iter_N/model.pdopt         optimizer state, incl. the LR scheduler
    save_dir/iter_N/train_state.json    iteration, best mIoU and its iteration, data seed
    save_dir/iter_N/param_names.json    structured parameter name -> Paddle's unique name
    save_dir/iter_N/ema_model.pdparams  EMA of the weights (``--use_ema``, PaddleSeg's name)
    save_dir/best_model/model.pdparams
    save_dir/ema_best_model/ema_model.pdparams   the EMA weights of the best EMA mIoU

Paddle keys optimizer state by each parameter's process-unique name (``conv2d_3.w_0``),
which differs when the model is built in another order or twice in one process;
``param_names.json`` lets :func:`load_checkpoint` rename the saved state to the current
parameters. Checkpoints written before the detail loss's fuse kernel became a buffer also hold
``losses.pdparams`` and the kernel's optimizer state: both are ignored on loading. A checkpoint
folder is first written as ``.iter_N.tmp`` and renamed when complete, so a
process killed mid-save leaves either the whole checkpoint or none.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import paddle
import paddle.nn as nn

_ITER_DIR = re.compile(r"^iter_(\d+)$")
EMA_FILE = "ema_model.pdparams"
EMA_BEST_DIR = "ema_best_model"

logger = logging.getLogger("paddle_stdc")


@dataclass
class TrainState:
    """Counters that must survive a resume."""

    iteration: int = 0
    best_miou: float = -1.0
    best_iter: int = -1
    data_seed: int = 0
    best_ema_miou: float = -1.0
    best_ema_iter: int = -1


def _write_dir_atomically(final: Path, write) -> None:
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)


def _param_names(model: nn.Layer) -> Dict[str, str]:
    return {f"model.{k}": p.name for k, p in model.named_parameters()}


def _rename_optimizer_state(state: Dict, old: Dict[str, str], new: Dict[str, str]) -> Dict:
    """Map optimizer-state keys from the saved unique parameter names to the current ones;
    drop the state of saved parameters that no longer exist (an old checkpoint's
    ``losses.*``), which could otherwise collide with a current parameter's name."""
    mapping: Dict[str, Optional[str]] = {old[k]: None for k in old.keys() - new.keys()}
    mapping.update({old[k]: new[k] for k in old.keys() & new.keys()})
    by_length = sorted(mapping, key=len, reverse=True)

    def rename(key: str) -> Optional[str]:
        for name in by_length:
            if key == name or key.startswith(name + "_"):
                target = mapping[name]
                return None if target is None else target + key[len(name) :]
        return key

    def renamed(items: Dict) -> Dict:
        pairs = ((rename(k), v) for k, v in items.items())
        return {k: v for k, v in pairs if k is not None}

    out = {}
    for key, value in state.items():
        if isinstance(value, dict) and key != "LR_Scheduler":
            out[key] = renamed(value)  # e.g. master_weights
        elif (new_key := rename(key)) is not None:
            out[new_key] = value
    return out


def save_checkpoint(
    save_dir: str | Path,
    model: nn.Layer,
    optimizer: paddle.optimizer.Optimizer,
    state: TrainState,
    extra_files: Optional[Dict[str, bytes]] = None,
    ema: Optional[nn.Layer] = None,
) -> Path:
    """Write ``save_dir/iter_{state.iteration}`` atomically and return its path.

    ``extra_files`` (name -> bytes) are written into the same folder before it is published;
    ``ema`` (the EMA model) goes to ``ema_model.pdparams``.
    """
    final = Path(save_dir) / f"iter_{state.iteration}"

    def write(tmp: Path) -> None:
        paddle.save(model.state_dict(), str(tmp / "model.pdparams"))
        paddle.save(optimizer.state_dict(), str(tmp / "model.pdopt"))
        if ema is not None:
            paddle.save(ema.state_dict(), str(tmp / EMA_FILE))
        (tmp / "train_state.json").write_text(json.dumps(asdict(state), indent=2))
        names = _param_names(model)
        (tmp / "param_names.json").write_text(json.dumps(names, indent=1))
        for name, payload in (extra_files or {}).items():
            (tmp / name).write_bytes(payload)

    _write_dir_atomically(final, write)
    return final


def save_best_model(
    save_dir: str | Path,
    model: nn.Layer,
    folder: str = "best_model",
    filename: str = "model.pdparams",
) -> Path:
    """Write ``save_dir/best_model/model.pdparams`` (or ``folder/filename``) atomically."""
    final = Path(save_dir) / folder
    _write_dir_atomically(final, lambda tmp: paddle.save(model.state_dict(), str(tmp / filename)))
    return final


def save_best_ema_model(save_dir: str | Path, ema: nn.Layer) -> Path:
    """Write ``save_dir/ema_best_model/ema_model.pdparams`` (PaddleSeg 2.8's names)."""
    return save_best_model(save_dir, ema, EMA_BEST_DIR, EMA_FILE)


def list_checkpoints(save_dir: str | Path) -> List[Path]:
    """Complete ``iter_N`` folders under ``save_dir``, oldest first."""
    save_dir = Path(save_dir)
    if not save_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in save_dir.iterdir() if (m := _ITER_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(save_dir: str | Path, keep: int) -> None:
    """Delete the oldest ``iter_N`` folders beyond ``keep`` (keep <= 0 keeps all)."""
    if keep <= 0:
        return
    for path in list_checkpoints(save_dir)[:-keep]:
        shutil.rmtree(path)


def load_checkpoint(
    ckpt_dir: str | Path,
    model: nn.Layer,
    optimizer: Optional[paddle.optimizer.Optimizer] = None,
    ema: Optional[nn.Layer] = None,
) -> TrainState:
    """Restore model and optimizer (with LR schedule) from ``iter_N``.

    ``ema`` gets ``ema_model.pdparams``; a checkpoint without one (saved without
    ``--use_ema``) leaves ``ema`` as it is, with a warning.
    """
    ckpt_dir = Path(ckpt_dir)
    params = ckpt_dir / "model.pdparams"
    if not params.is_file():
        raise FileNotFoundError(
            f"cannot resume: {params} does not exist (expected a save_dir/iter_N folder)"
        )
    model.set_state_dict(paddle.load(str(params)))
    if optimizer is not None:
        opt_path = ckpt_dir / "model.pdopt"
        if not opt_path.is_file():
            raise FileNotFoundError(f"cannot resume: {opt_path} does not exist")
        opt_state = paddle.load(str(opt_path))
        names_path = ckpt_dir / "param_names.json"
        if names_path.is_file():
            saved = json.loads(names_path.read_text())
            opt_state = _rename_optimizer_state(opt_state, saved, _param_names(model))
        optimizer.set_state_dict(opt_state)
    if (ckpt_dir / "losses.pdparams").is_file():
        logger.info("%s: ignoring losses.pdparams (the fuse kernel is now fixed)", ckpt_dir)
    if ema is not None:
        _load_ema(ckpt_dir / EMA_FILE, ema)
    state_path = ckpt_dir / "train_state.json"
    if state_path.is_file():
        return TrainState(**json.loads(state_path.read_text()))
    match = _ITER_DIR.match(ckpt_dir.name)  # a PaddleSeg checkpoint: iteration from the name
    if not match:
        raise ValueError(f"cannot tell the iteration of checkpoint {ckpt_dir}")
    return TrainState(iteration=int(match.group(1)))


def _load_ema(path: Path, ema: nn.Layer) -> None:
    if not path.is_file():
        logger.warning(
            "%s has no %s (saved without --use_ema): the EMA starts from the resumed weights",
            path.parent, path.name,
        )  # fmt: skip
        return
    ema.set_state_dict(paddle.load(str(path)))
