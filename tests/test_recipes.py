"""Every config trains the recipe it cites: values written here with the source file they come
from, compared to our merged configs; the paper recipe against the official code's numbers."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import paddle
import pytest

from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.schedules import ExpWarmupPolyDecay
from paddle_stdc.engine.trainer import schedule_lrs
from paddle_stdc.losses.detail_aggregate import DetailAggregateLoss, decayed_kernels

from .conftest import ROOT
from .test_losses import detail_inputs, official_numbers

MM = "mmsegmentation 1.2.2 configs/"
R18 = MM + "bisenetv1/bisenetv1_r18-d32_4xb4-160k_cityscapes-1024x1024.py"
R50 = MM + "bisenetv1/bisenetv1_r50-d32_4xb4-160k_cityscapes-1024x1024.py"
V2 = MM + "bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py"
MODEL_R18 = MM + "_base_/models/bisenetv1_r18-d32.py"
MODEL_V2 = MM + "_base_/models/bisenetv2.py"
DATA = MM + "_base_/datasets/cityscapes_1024x1024.py"
SCHED = MM + "_base_/schedules/schedule_160k.py"
CE_DEFAULT = "mmseg/models/losses/cross_entropy_loss.py (avg_non_ignore=False)"
MEAN = [123.675 / 255, 116.28 / 255, 103.53 / 255]
STD = [58.395 / 255, 57.12 / 255, 57.375 / 255]

#: (key in our merged config, value, where the value comes from); `[Type]` picks a transform.
MMSEG_CITYSCAPES = [
    ("iters", 160000, SCHED + " max_iters"),
    ("optimizer.type", "SGD", "optimizer=dict(type='SGD')"),
    ("optimizer.momentum", 0.9, "optimizer momentum=0.9"),
    ("optimizer.weight_decay", 5e-4, "optimizer weight_decay=0.0005"),
    ("lr_scheduler.type", "PolynomialDecay", "PolyLR"),
    ("lr_scheduler.warmup_iters", 1000, "LinearLR(begin=0, end=1000)"),
    ("lr_scheduler.end_lr", 1e-4, "PolyLR(eta_min=1e-4)"),
    ("lr_scheduler.power", 0.9, "PolyLR(power=0.9)"),
    ("train_dataset.transforms[ResizeStepScaling].min_scale_factor", 0.5, DATA + " ratio_range"),
    ("train_dataset.transforms[ResizeStepScaling].max_scale_factor", 2.0, DATA + " ratio_range"),
    ("train_dataset.transforms[ResizeStepScaling].scale_step_size", 0, DATA + " continuous"),
    ("train_dataset.transforms[RandomPaddingCrop].crop_size", [1024, 1024], DATA + " crop_size"),
    ("train_dataset.transforms[RandomPaddingCrop].category_max_ratio", 0.75, DATA),
    ("train_dataset.transforms[RandomHorizontalFlip].prob", 0.5, DATA + " RandomFlip"),
    ("train_dataset.transforms[RandomDistort].brightness_prob", 0.5, "PhotoMetricDistortion"),
    ("train_dataset.transforms[RandomDistort].contrast_range", 0.5, "contrast_range (0.5, 1.5)"),
    ("train_dataset.transforms[RandomDistort].contrast_prob", 0.5, "PhotoMetricDistortion"),
    ("train_dataset.transforms[RandomDistort].saturation_range", 0.5, "(0.5, 1.5)"),
    ("train_dataset.transforms[RandomDistort].saturation_prob", 0.5, "PhotoMetricDistortion"),
    ("train_dataset.transforms[RandomDistort].hue_prob", 0.5, "PhotoMetricDistortion"),
    ("train_dataset.transforms[Normalize].mean", MEAN, MODEL_R18 + " data_preprocessor mean"),
    ("train_dataset.transforms[Normalize].std", STD, MODEL_R18 + " data_preprocessor std"),
    ("val_dataset.transforms[Normalize].mean", MEAN, "data_preprocessor mean"),
    ("val_dataset.transforms[0].type", "Normalize", DATA + " test Resize(2048, 1024): full size"),
    ("val_dataset.transforms[0].std", STD, "data_preprocessor std"),
]
BISENETV1 = [
    ("batch_size", 4, R18 + " train_dataloader batch_size=4 (x 4 GPUs)"),
    ("lr_scheduler.learning_rate", 0.025, R18 + " lr=0.025"),
    ("lr_scheduler.warmup_start_lr", 0.0025, R18 + " LinearLR start_factor=0.1"),
    ("loss.coef", [1, 1, 1], MODEL_R18 + " loss_weight=1.0 (decode, 2 auxiliary heads)"),
    ("loss.types", [{"type": "CrossEntropyLoss", "avg_non_ignore": False}] * 3, CE_DEFAULT),
]
R50_VALUES = [
    ("lr_scheduler.learning_rate", 0.05, R50 + " lr=0.05"),
    ("lr_scheduler.warmup_start_lr", 0.005, R50 + " LinearLR start_factor=0.1"),
    ("model.backbone.type", "ResNet50V1c", R50 + " ResNet depth=50"),
]
BISENETV2 = [
    ("batch_size", 4, V2 + " batch_size=4"),
    ("lr_scheduler.learning_rate", 0.05, V2 + " lr=0.05"),
    ("lr_scheduler.warmup_start_lr", 0.005, V2 + " LinearLR start_factor=0.1"),
    ("loss.coef", [1] * 5, MODEL_V2 + " loss_weight=1.0 (decode, 4 auxiliary heads)"),
    ("loss.types", [{"type": "CrossEntropyLoss", "avg_non_ignore": False}] * 5, CE_DEFAULT),
]

OFFICIAL = "MichaelFan01/STDC-Seg "
TRAIN = OFFICIAL + "train.py"
PAPER = [
    ("batch_size", 16, TRAIN + " n_img_per_gpu=16 (x 3 processes)"),
    ("iters", 60000, OFFICIAL + "scripts/cityscaptes_train_STDC*Seg.sh --max_iter 60000"),
    ("optimizer.momentum", 0.9, TRAIN + " momentum = 0.9"),
    ("optimizer.weight_decay", 5e-4, TRAIN + " weight_decay = 5e-4"),
    ("lr_scheduler.type", "ExpWarmupPolyDecay", OFFICIAL + "optimizer_loss.py"),
    ("lr_scheduler.learning_rate", 0.01, TRAIN + " lr_start = 1e-2"),
    ("lr_scheduler.warmup_steps", 1000, TRAIN + " --warmup_steps 1000"),
    ("lr_scheduler.start_lr", 1e-5, TRAIN + " warmup_start_lr = 1e-5"),
    ("lr_scheduler.power", 0.9, TRAIN + " power = 0.9"),
    ("train_dataset.transforms[ResizeStepScaling].min_scale_factor", 0.125, TRAIN + " scales"),
    ("train_dataset.transforms[ResizeStepScaling].max_scale_factor", 1.5, TRAIN + " scales"),
    ("train_dataset.transforms[ResizeStepScaling].scale_step_size", 0.125, TRAIN + " scales"),
    ("train_dataset.transforms[LimitLong].min_long", 1024, OFFICIAL + "transform.py RandomCrop"),
    ("train_dataset.transforms[RandomPaddingCrop].crop_size", [1024, 512], TRAIN + " cropsize"),
    ("train_dataset.transforms[RandomDistort].brightness_range", 0.5, "cityscapes.py ColorJitter"),
    ("train_dataset.transforms[RandomDistort].contrast_range", 0.5, "cityscapes.py ColorJitter"),
    ("train_dataset.transforms[RandomDistort].saturation_range", 0.5, "cityscapes.py ColorJitter"),
    ("train_dataset.transforms[RandomDistort].hue_prob", 0.0, "cityscapes.py: no hue jitter"),
    ("train_dataset.transforms[Normalize].mean", [0.485, 0.456, 0.406], "cityscapes.py"),
    ("train_dataset.transforms[Normalize].std", [0.229, 0.224, 0.225], "cityscapes.py"),
    ("loss.coef", [1, 1, 1, 1], TRAIN + " lossp + loss2 + loss3 + bce + dice"),
    ("loss.types[0]", {"type": "OhemCrossEntropyLoss", "thresh": 0.7,
                       "min_kept": 16 * 1024 * 512 // 16, "keep_exactly": True},
     TRAIN + " score_thres = 0.7, n_min = n_img_per_gpu * 1024 * 512 // 16"),
    ("loss.types[3]", {"type": "DetailAggregateLoss", "kernel_decay": True},
     TRAIN + " DetailAggregateLoss in the optimizer (optimizer_loss.py)"),
]  # fmt: skip
PAPER_MODELS = {
    "stdc1": ("STDC1", "official_stdcnet813_imagenet", 72.2, 74.5),
    "stdc2": ("STDC2", "official_stdcnet1446_imagenet", 74.2, 77.0),
}


def lookup(dic: Any, path: str) -> Any:
    """``a.b[Type].c`` / ``a[0]``: dict keys, list indices, or the transform of that type."""
    for part in re.findall(r"[^.\[\]]+|\[[^\]]+\]", path):
        if part.startswith("["):
            key = part[1:-1]
            dic = dic[int(key)] if key.isdigit() else next(t for t in dic if t["type"] == key)
        else:
            dic = dic[part]
    return dic


def _config(name: str) -> dict:
    return load_config(str(ROOT / "configs" / name), pretrained=True).dic


def _check(config: str, table) -> None:
    dic = _config(config)
    for path, want, source in table:
        got = lookup(dic, path)
        if isinstance(want, float) or (isinstance(want, list) and want and
                                       isinstance(want[0], float)):  # fmt: skip
            np.testing.assert_allclose(got, want, rtol=1e-9, err_msg=f"{path} ({source})")
        else:
            assert got == want, f"{config}: {path} = {got!r}, {source} says {want!r}"


@pytest.mark.parametrize(
    "config, table",
    [
        ("bisenetv1_r18-d32_cityscapes_1024x1024_160k.yml", MMSEG_CITYSCAPES + BISENETV1),
        ("bisenetv1_r50-d32_cityscapes_1024x1024_160k.yml",
         MMSEG_CITYSCAPES + BISENETV1[3:] + R50_VALUES),
        ("bisenetv2_cityscapes_1024x1024_160k.yml", MMSEG_CITYSCAPES + BISENETV2),
    ],
    ids=["bisenetv1_r18", "bisenetv1_r50", "bisenetv2"],
)  # fmt: skip
def test_mmseg_recipes_value_for_value(config, table):
    _check(config, table)


def _mmseg_lr(base: float, it: int) -> float:
    """LinearLR(start_factor=0.1, end=1000) then PolyLR(eta_min=1e-4, power=0.9, end=160k)."""
    if it < 1000:
        return base * (0.1 + 0.9 * it / 1000)
    return (base - 1e-4) * (1 - (it - 1000) / 159000) ** 0.9 + 1e-4


def test_mmseg_lr_curve():
    builder = Builder(load_config(str(ROOT / "configs" / BISENETV1_R18), pretrained=False))
    sched = builder.new_lr_scheduler()
    for it in range(160001):
        if it in (0, 1, 500, 999, 1001, 80500, 159999, 160000):
            assert sched() == pytest.approx(_mmseg_lr(0.025, it), rel=1e-3), it
        if it < 160000:
            sched.step()


BISENETV1_R18 = "bisenetv1_r18-d32_cityscapes_1024x1024_160k.yml"


@pytest.mark.parametrize("model", sorted(PAPER_MODELS))
@pytest.mark.parametrize("seg", [50, 75])
def test_paper_recipe_values(model, seg):
    config = f"{model}_seg{seg}_cityscapes_1024x512_60k_official.yml"
    _check(config, PAPER)
    backbone, entry, seg50, seg75 = PAPER_MODELS[model]
    dic = _config(config)
    assert dic["model"]["backbone"] == {"type": backbone, "pretrained": entry}
    assert dic["test_config"]["eval_scale"] == seg / 100
    header = (ROOT / "configs" / config).read_text().split("\n_base_")[0]
    assert "Source recipe: the official STDC-Seg train.py" in header
    assert str(seg50 if seg == 50 else seg75) in header and "3 processes" in header


def _official_group(name: str, is_bn: bool) -> tuple:
    """(lr multiplier, weight decay) of the official BiSeNet.get_params / Optimizer groups."""
    if name.startswith("cp.backbone.") and is_bn:
        return 0.0, 0.0  # the backbone's torch BatchNorm2d is in no group: never updated
    lr = 10.0 if name.startswith(("ffm.", "conv_out")) else 1.0
    return lr, 0.0 if is_bn or name.endswith(".bias") else 5e-4


@pytest.mark.parametrize("model", sorted(PAPER_MODELS))
def test_paper_recipe_parameter_groups_are_the_official_ones(model):
    config = ROOT / "configs" / f"{model}_seg50_cityscapes_1024x512_60k_official.yml"
    builder = Builder(load_config(str(config), pretrained=False))
    bn_types = (paddle.nn.layer.norm._BatchNormBase,)
    bn_params = {
        id(p) for _, layer in builder.model.named_sublayers() if isinstance(layer, bn_types)
        for p in layer.parameters()
    }  # fmt: skip
    groups = {}
    for group in builder.optimizer._param_groups:
        coeff = group.get("regularization_coeff", 5e-4)
        for p in group["params"]:
            groups[id(p)] = (group.get("learning_rate", 1.0), coeff)
    trainable = [(n, p) for n, p in builder.model.named_parameters() if not p.stop_gradient]
    assert len(groups) == len(trainable)
    counts = {}
    for name, param in trainable:
        want = _official_group(name, id(param) in bn_params)
        assert groups[id(param)] == pytest.approx(want), name
        counts[want] = counts.get(want, 0) + 1
    assert set(counts) == {(0.0, 0.0), (1.0, 0.0), (1.0, 5e-4), (10.0, 0.0), (10.0, 5e-4)}


def test_official_schedule_and_decayed_kernel():
    """The paper config's LR schedule and the detail kernel it decays, against the official
    Optimizer's numbers at a few iterations (tests/fixtures/official)."""
    ref = official_numbers()["kernel_decay"]
    config = ROOT / "configs" / "stdc1_seg50_cityscapes_1024x512_60k_official.yml"
    lrs = schedule_lrs(Builder(load_config(str(config), pretrained=False)))
    assert len(lrs) == 60000
    for step, lr in ref["lr"].items():
        assert lrs[int(step)] == pytest.approx(lr, rel=1e-9, abs=1e-15), step
    kernels = decayed_kernels((0.6, 0.3, 0.1), lrs, 5e-4, 0.9)
    loss = DetailAggregateLoss(kernel_decay=True)
    loss.bind_schedule(lrs, 5e-4, 0.9)
    cases = official_numbers()["detail"]
    for step, kernel in ref["kernel"].items():
        np.testing.assert_allclose(kernels[int(step)], kernel, rtol=2e-6, err_msg=step)
        loss.set_iteration(int(step))
        for name, (bce, dice) in ref["loss"][step].items():
            logits, label = detail_inputs(**cases[name]["input"])
            got = float(loss(paddle.to_tensor(logits), paddle.to_tensor(label)))
            assert got == pytest.approx(bce + dice, rel=2e-6), (step, name)
    assert ref["loss"]["60000"] != ref["loss"]["0"]  # the decayed kernel changed the targets
    assert kernels[-1][0] / 0.6 == pytest.approx(0.21, abs=0.005)


def test_exp_warmup_poly_decay_formula():
    sched = ExpWarmupPolyDecay(0.01, decay_steps=100, warmup_steps=10, start_lr=1e-4, power=0.9)
    values = []
    for _ in range(101):
        values.append(sched())
        sched.step()
    assert values[0] == pytest.approx(1e-4) and values[10] == pytest.approx(0.01)
    assert values[5] == pytest.approx(1e-4 * 100**0.5)
    assert values[55] == pytest.approx(0.01 * 0.5**0.9) and values[100] == 0.0
    with pytest.raises(ValueError, match="decay_steps"):
        ExpWarmupPolyDecay(0.01)


TINY_PAPER = """
_base_: {base}
batch_size: 2
iters: 4
lr_scheduler: {{warmup_steps: 2}}
train_dataset:
  dataset_root: {root}
  transforms:
    - {{type: RandomDistort, brightness_range: 0.5, brightness_prob: 1.0, contrast_range: 0.5,
       contrast_prob: 1.0, saturation_range: 0.5, saturation_prob: 1.0, hue_prob: 0.0}}
    - {{type: RandomHorizontalFlip}}
    - {{type: ResizeStepScaling, min_scale_factor: 0.125, max_scale_factor: 1.5,
       scale_step_size: 0.125}}
    - {{type: LimitLong, min_long: 96}}
    - {{type: RandomPaddingCrop, crop_size: [96, 48]}}
    - {{type: Normalize, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}}
val_dataset:
  dataset_root: {root}
loss:
  types:
    - {{type: OhemCrossEntropyLoss, thresh: 0.7, min_kept: 576, keep_exactly: true}}
    - {{type: OhemCrossEntropyLoss, thresh: 0.7, min_kept: 576, keep_exactly: true}}
    - {{type: OhemCrossEntropyLoss, thresh: 0.7, min_kept: 576, keep_exactly: true}}
    - {{type: DetailAggregateLoss, kernel_decay: true}}
  coef: [1, 1, 1, 1]
"""


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(PAPER_MODELS))
def test_paper_recipe_trains_resumes_exactly_and_evaluates_seg50_and_seg75(
    model, tmp_path, synthetic_root
):
    from paddle_stdc.engine.evaluator import evaluate
    from paddle_stdc.engine.trainer import TrainOptions, iteration_hooks, train

    base = ROOT / "configs" / f"{model}_seg50_cityscapes_1024x512_60k_official.yml"
    config = tmp_path / "paper.yml"  # min_kept: 2 images x 96 x 48 / 16, the official rule
    config.write_text(TINY_PAPER.format(base=base, root=synthetic_root))

    def run(save_dir, resume=None):
        builder = Builder(load_config(str(config), pretrained=False))
        opts = TrainOptions(save_dir=str(save_dir), save_interval=2, seed=5, resume_model=resume)
        return builder, train(builder, opts)

    full, _ = run(tmp_path / "full")
    (detail,) = iteration_hooks(full.loss)
    assert detail.kernel_decay and detail._trajectory.shape == (5, 3)
    resumed, result = run(tmp_path / "resumed", resume=str(tmp_path / "full" / "iter_2"))
    assert result.state.iteration == 4
    want = full.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        np.testing.assert_allclose(value.numpy(), want[key].numpy(), atol=1e-6, err_msg=key)
    seg50 = evaluate(resumed.model, resumed.val_dataset, **resumed.test_config())
    seg75 = evaluate(resumed.model, resumed.val_dataset, eval_scale=0.75)
    assert "0.5" in seg50.protocol and "0.75" in seg75.protocol
    for res in (seg50, seg75):
        assert res.num_samples == 2 and res.confusion.sum() > 0 and 0 <= res.miou <= 1
