"""A short train -> checkpoint -> resume -> evaluate -> predict run on generated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from visualdl import LogReader

from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.evaluator import evaluate
from paddle_stdc.engine.predictor import list_images, predict
from paddle_stdc.engine.trainer import TrainOptions, train
from paddle_stdc.utils.visualize import palette_for

from .conftest import ROOT


def _run(config: Path, save_dir: Path, iters: int, resume=None, **kw):
    builder = Builder(load_config(str(config), iters=iters, pretrained=False))
    options = TrainOptions(
        save_dir=str(save_dir), save_interval=2, log_iters=1, seed=3, resume_model=resume, **kw
    )
    return builder, train(builder, options)


def _weights(model) -> dict:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_train_resume_evaluate_predict(tiny_config, tmp_path, synthetic_root):
    # Uninterrupted: 4 iterations, evaluating and logging to VisualDL at each save.
    full_dir = tmp_path / "full"
    builder, result = _run(tiny_config, full_dir, 4, do_eval=True, use_vdl=True)
    assert result.state.iteration == 4
    for it in (2, 4):
        names = {p.name for p in (full_dir / f"iter_{it}").iterdir()}
        assert {"model.pdparams", "model.pdopt"} <= names and "losses.pdparams" not in names
    assert (full_dir / "best_model" / "model.pdparams").is_file()
    (log_file,) = full_dir.glob("vdlrecords.*.log")
    tags = LogReader(file_path=str(log_file)).get_tags()
    expected_scalars = {"Train/loss", "Train/lr", "Train/batch_cost", "Train/reader_cost"}
    expected_scalars |= {f"Train/loss_{i}" for i in range(4)} | {"Evaluate/mIoU", "Evaluate/Acc"}
    assert expected_scalars <= set(tags["scalar"])
    assert {"Evaluate/prediction_0", "Evaluate/prediction_1"} <= set(tags["image"])
    assert result.last_eval is not None and 0.0 <= result.last_eval.miou <= 1.0
    full = _weights(builder.model)

    # A run stopped after iteration 2 leaves iter_2; resuming it in a new builder (new
    # parameter names, fresh RNG) must reach the uninterrupted run's weights.
    resumed_builder, resumed = _run(
        tiny_config, tmp_path / "resumed", 4, resume=str(full_dir / "iter_2")
    )
    assert resumed.state.iteration == 4
    opt = resumed_builder.optimizer
    assert opt.get_lr() == pytest.approx(builder.optimizer.get_lr())
    for key, value in _weights(resumed_builder.model).items():
        np.testing.assert_allclose(value, full[key], atol=1e-6, rtol=0, err_msg=key)

    # Evaluate and predict with the trained model.
    res = evaluate(resumed_builder.model, resumed_builder.val_dataset)
    assert res.num_samples == 2 and res.confusion.sum() > 0
    images = list_images(synthetic_root / "leftImg8bit" / "val")
    written = predict(
        resumed_builder.model, resumed_builder.val_transforms, images, tmp_path / "pred",
        palette_for(19),
    )  # fmt: skip
    assert len(written) == 2 and all(p.is_file() for p in written)
    assert len(list((tmp_path / "pred" / "added_prediction").glob("*.jpg"))) == 2


TINY_V2 = """
_base_: {base}
batch_size: 2
iters: 4
model:
  type: BiSeNetV2
train_dataset:
  dataset_root: {root}
  transforms:
    - type: RandomPaddingCrop
      crop_size: [64, 64]
    - type: Normalize
val_dataset:
  dataset_root: {root}
loss:
  types: [{{type: CrossEntropyLoss}}, {{type: CrossEntropyLoss}}, {{type: CrossEntropyLoss}},
          {{type: CrossEntropyLoss}}, {{type: CrossEntropyLoss}}]
  coef: [1, 1, 1, 1, 1]
"""


@pytest.mark.slow
def test_resume_is_exact_with_dropout(tmp_path, synthetic_root):
    """BiSeNetV2's heads use dropout; a resumed run must still match the uninterrupted one."""
    base = ROOT / "configs" / "bisenetv2_cityscapes_1024x1024_160k.yml"
    config = tmp_path / "v2.yml"
    config.write_text(TINY_V2.format(base=base, root=synthetic_root))
    full_builder, _ = _run(config, tmp_path / "full", 4)
    resumed_builder, _ = _run(config, tmp_path / "resumed", 4, resume=str(tmp_path / "full/iter_2"))
    full = _weights(full_builder.model)
    for key, value in _weights(resumed_builder.model).items():
        np.testing.assert_allclose(value, full[key], atol=1e-6, rtol=0, err_msg=key)


def test_visualdl_images_use_the_configs_palette(tmp_path):
    from paddle_stdc.engine.logging import VisualDLWriter

    class _Result:
        confusion = np.zeros((2, 2))
        samples = [(0, np.array([[0, 1]]), np.array([[1, 255]]))]

    writer = VisualDLWriter(tmp_path, True, palette=[[10, 20, 30], [40, 50, 60]])
    written = []
    writer._writer.add_image = lambda tag, image, step: written.append(image)
    writer.eval_images(_Result(), object(), 1)
    writer.close()
    (image,) = written
    assert image[0, 0].tolist() == [10, 20, 30] and image[0, 1].tolist() == [40, 50, 60]
    assert image[0, 2].tolist() == [40, 50, 60]  # the label half
