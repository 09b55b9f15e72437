"""Config validation names the key and the fix, before any training step."""

from __future__ import annotations

import pytest

from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.trainer import TrainOptions, train
from paddle_stdc.engine.validate import ConfigError, check_loss_count, validate_config

from .conftest import ROOT, all_configs

STDC1 = str(ROOT / "configs" / "stdc1_seg_cityscapes_1024x512_80k.yml")


def test_found_configs():
    assert len(all_configs()) >= 10


@pytest.mark.parametrize("path", all_configs(), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    validate_config(load_config(str(path), pretrained=False))


def _cfg(*opts: str, path: str = STDC1):
    return load_config(path, opts=list(opts), pretrained=False)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["iter=100"], r"unknown top-level key 'iter' -- did you mean 'iters'"),
        (["val_datasets=None"], r"did you mean 'val_dataset'"),
        (["model.num_classes=21"], r"model.num_classes is 21 but train_dataset \(Cityscapes\) "
                                   r"has 19 classes: set model.num_classes: 19"),
        (["train_dataset.dataset_rot=x"], r"train_dataset.dataset_rot: .*did you mean "
                                          r"'dataset_root'"),
        (["model.backbone.pretraind=x"], r"model.backbone.pretraind: .*'pretrained'"),
        (["model.type=STDCSeg2"], r"model.type: unknown component 'STDCSeg2' -- did you mean "
                                  r"'STDCSeg'"),
    ],
)  # fmt: skip
def test_mistakes_are_named(opts, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(_cfg(*opts))


def test_paddlesegs_load_time_checks_become_config_errors():
    with pytest.raises(
        ConfigError, match=r"(?s)stdc1_seg_cityscapes.*types should be 1 or be equal"
    ):
        _cfg("loss.coef=[1,1]")
    with pytest.raises(ConfigError, match=r"Can not update train_dataset.nothing.x"):
        _cfg("train_dataset.nothing.x=1")


def test_nested_typo_in_a_child_config(tmp_path):
    child = tmp_path / "child.yml"
    child.write_text(f"""
_base_: {STDC1}
train_dataset:
  transforms:
    - type: ResizeStepScaling
      min_scale_fator: 0.5
    - type: Normalize
""")
    with pytest.raises(ConfigError, match=r"train_dataset.transforms\[0\].min_scale_fator: "
                       r"ResizeStepScaling .*'min_scale_factor'"):  # fmt: skip
        validate_config(load_config(str(child), pretrained=False))


def test_file_list_dataset_class_count_is_checked(tmp_path):
    config = tmp_path / "custom.yml"
    config.write_text(f"""
_base_: {STDC1}
train_dataset:
  _inherited_: False
  type: Dataset
  dataset_root: {tmp_path}
  train_path: {tmp_path}/train.txt
  num_classes: 5
  mode: train
  transforms: [{{type: Normalize}}]
val_dataset:
  _inherited_: False
  type: Dataset
  dataset_root: {tmp_path}
  val_path: {tmp_path}/val.txt
  num_classes: 5
  mode: val
  transforms: [{{type: Normalize}}]
""")
    with pytest.raises(ConfigError, match=r"(?s)custom.yml.*num_classes. is not consistent"):
        validate_config(load_config(str(config), opts=["model.num_classes=19"], pretrained=False))
    cfg = load_config(str(config), pretrained=False)  # unset: taken from the datasets
    validate_config(cfg)
    assert cfg.dic["model"]["num_classes"] == 5


def test_loss_count_against_the_models_training_outputs(tmp_path):
    child = tmp_path / "one_loss.yml"
    child.write_text(
        f"_base_: {STDC1}\nloss:\n  types: [{{type: CrossEntropyLoss}}]\n  coef: [1]\n"
    )
    builder = Builder(load_config(str(child), pretrained=False))
    with pytest.raises(ConfigError, match=r"STDCSeg returns 4 training outputs \['seg', "):
        check_loss_count(builder.model, builder.loss)


def test_train_refuses_before_the_first_step(tmp_path):
    builder = Builder(_cfg("iter=5"))
    with pytest.raises(ConfigError, match="iters"):
        train(builder, TrainOptions(save_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["optimizer.type=SDG"], r"optimizer.type: unknown optimizer 'SDG' -- did you mean 'SGD'"),
        (["optimizer.momentun=0.9"], r"optimizer.momentun: SGD takes no argument 'momentun' -- "
                                     r"did you mean 'momentum'"),
        (["optimizer.nesterov=True"], r"optimizer.nesterov: .*did you mean 'use_nesterov'"),
        (["lr_scheduler.type=PolynomialDcay"],
         r"lr_scheduler.type: unknown schedule 'PolynomialDcay' -- did you mean 'PolynomialDecay'"),
        (["lr_scheduler.powr=0.9"], r"lr_scheduler.powr: PolynomialDecay takes no argument "
                                    r"'powr' -- did you mean 'power'"),
        (["lr_scheduler.warmup_iter=10"], r"lr_scheduler.warmup_iter: .*'warmup_iters'"),
        (["lr_scheduler.warmup_iters=10"], r"warmup needs both warmup_iters and warmup_start_lr"),
        (["loss.coeff=[1,1,1,1]"], r"loss.coeff: unknown key -- did you mean 'coef'"),
    ],
)  # fmt: skip
def test_optimizer_lr_scheduler_and_loss_mistakes_are_named(opts, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(_cfg(*opts))


def test_sgd_with_momentum_is_checked_as_momentum_and_aliases_work(tmp_path):
    validate_config(_cfg("optimizer.type=sgd", "optimizer.use_nesterov=True"))
    with pytest.raises(ConfigError, match=r"optimizer.momentum: adam takes no argument"):
        validate_config(_cfg("optimizer.type=adam"))  # the base's momentum: not Adam's
    validate_config(_child(tmp_path, "optimizer:\n  _inherited_: False\n  type: adam\n"
                                     "  beta1: 0.8\n"))  # fmt: skip


def _child(tmp_path, body: str):
    child = tmp_path / "child.yml"
    child.write_text(f"_base_: {STDC1}\n{body}")
    return load_config(str(child), pretrained=False)


def test_every_loss_entry_and_mixed_loss_member_is_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"loss.types\[1\].min_kep: OhemCrossEntropyLoss "
                                          r".*did you mean 'min_kept'"):  # fmt: skip
        validate_config(
            _child(
                tmp_path,
                """
loss:
  types:
    - type: OhemCrossEntropyLoss
    - type: OhemCrossEntropyLoss
      min_kep: 10
    - type: OhemCrossEntropyLoss
    - type: DetailAggregateLoss
  coef: [1, 1, 1, 1]
""",
            )
        )
    with pytest.raises(ConfigError, match=r"loss.types\[0\].losses\[1\].type: unknown component "
                                          r"'DiceLos' -- did you mean 'DiceLoss'"):  # fmt: skip
        validate_config(
            _child(
                tmp_path,
                """
loss:
  types:
    - type: MixedLoss
      losses: [{type: CrossEntropyLoss}, {type: DiceLos}]
      coef: [1, 1]
    - type: OhemCrossEntropyLoss
    - type: OhemCrossEntropyLoss
    - type: DetailAggregateLoss
  coef: [1, 1, 1, 1]
""",
            )
        )


def test_a_schedule_without_its_required_argument(tmp_path):
    cfg = _child(tmp_path, "lr_scheduler:\n  _inherited_: False\n  type: StepDecay\n"
                           "  learning_rate: 0.01\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"lr_scheduler: StepDecay needs `step_size`"):
        validate_config(cfg)
    cfg = _child(tmp_path, "lr_scheduler:\n  _inherited_: False\n  type: PolynomialDecay\n"
                           "  learning_rate: 0.01\n")  # decay_steps: PaddleSeg sets it  # fmt: skip
    validate_config(cfg)
