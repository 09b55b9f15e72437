"""The embedded quick start: generate data, train STDC1-Seg, evaluate, predict.

Everything runs on CPU in a few minutes; see ``tools/quickstart.py`` and the README.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from paddle_stdc.data.palettes import config_class_names
from paddle_stdc.data.synthetic import make_synthetic_cityscapes
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.evaluator import EvalResult, evaluate
from paddle_stdc.engine.predictor import list_images, predict
from paddle_stdc.engine.trainer import TrainOptions, train
from paddle_stdc.utils.visualize import palette_for

logger = logging.getLogger("paddle_stdc")

DEFAULT_CONFIG = "configs/quickstart/stdc1_seg_synthetic_512x256.yml"


@dataclass
class QuickstartResult:
    eval_result: EvalResult
    chance_miou: float
    predictions: List[Path]


def majority_class_miou(confusion: np.ndarray) -> float:
    """mIoU of predicting the most frequent ground-truth class everywhere (the chance level)."""
    gt = confusion.sum(axis=1).astype(np.float64)
    present = gt > 0
    if not present.any():
        return 0.0
    # IoU of the majority class is its pixel share; every other present class scores 0.
    return float(gt.max() / gt.sum() / present.sum())


def run_quickstart(
    config: str = DEFAULT_CONFIG,
    data_root: str = "data/synthetic_cityscapes",
    save_dir: str = "output/quickstart",
    num_train: int = 48,
    num_val: int = 8,
    opts: Optional[Sequence[str]] = None,
    seed: int = 0,
    cpu_threads: Optional[int] = None,
) -> QuickstartResult:
    """Generate the dataset, train, evaluate and predict; return the measured numbers.

    ``cpu_threads``: compute threads on CPU (default: every core the process may use)."""
    make_synthetic_cityscapes(data_root, num_train=num_train, num_val=num_val, seed=seed)
    overrides = [f"train_dataset.dataset_root={data_root}", f"val_dataset.dataset_root={data_root}"]
    cfg = load_config(config, opts=overrides + list(opts or []), pretrained=False)
    builder = Builder(cfg)
    options = TrainOptions.from_config(
        cfg,
        save_dir=save_dir,
        save_interval=cfg.iters,
        log_iters=10,
        do_eval=False,
        use_vdl=True,
        seed=seed,
        cpu_threads=cpu_threads,
    )
    train(builder, options)
    result = evaluate(builder.model, builder.val_dataset, num_vis=0, cpu_threads=cpu_threads)
    chance = majority_class_miou(result.confusion)
    logger.info("Per-class IoU:\n%s", result.metrics.format_table(config_class_names(cfg.dic)))
    images = list_images(Path(data_root) / "leftImg8bit" / "val")
    predictions = predict(
        builder.model,
        builder.val_transforms,
        images,
        Path(save_dir) / "predict",
        palette_for(19, "Cityscapes"),
        cpu_threads=cpu_threads,
    )
    return QuickstartResult(result, chance, predictions)
