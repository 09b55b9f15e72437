"""PaddleSeg's own builder builds this project's configs: after ``import paddle_stdc``,
``paddleseg.cvlibs.SegBuilder(Config(path)).model`` builds every shipped config, and configs in
PaddleSeg 2.8's own form, with ``pretrained`` on the model and on its backbone loaded (local
files written here, and zoo entries whose options must be applied before loading)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import Config, SegBuilder, manager

import paddle_stdc
from paddle_stdc import zoo
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.validate import ConfigError, validate_config
from paddle_stdc.models.backbones import STDCNet
from paddle_stdc.models.stdcseg import STDCSeg
from paddle_stdc.registry import get_model_info
from paddle_stdc.utils.download import WeightsUnavailableError

from . import reference_rule as R
from .conftest import all_configs
from .test_reference_parity import our_outputs
from .torch_format import save_torch_zip

CONFIGS = all_configs()
#: the issue's config (PaddleSeg's stdcseg recipe)
ISSUE_CONFIG = "stdc2_seg_cityscapes_1024x512_80k.yml"

# non-strict loading of a file without the backbone's tensors: Paddle warns once per key
pytestmark = pytest.mark.filterwarnings("ignore:Skip loading for")


def test_configs_were_found():
    assert len(CONFIGS) >= 10 and ISSUE_CONFIG in {p.name for p in CONFIGS}


def test_issue_config_builds_with_paddleseg_and_loads_its_backbone_url(monkeypatch):
    """The issue's script, fast: the backbone's `pretrained` URL reaches the loader (patched:
    nothing is downloaded) after the backbone is built, and the model is ours."""
    loaded = []
    monkeypatch.setattr(
        "paddle_stdc.registry.load_pretrained", lambda layer, ref: loaded.append((layer, ref))
    )
    cfg = Config(str(next(p for p in CONFIGS if p.name == ISSUE_CONFIG)))
    model = SegBuilder(cfg).model
    assert isinstance(model, STDCSeg)
    url = cfg.model_cfg["backbone"]["pretrained"]
    assert url.startswith("https://") and loaded == [(model.cp.backbone, url)]


def _backbone_prefix(model: paddle.nn.Layer) -> Optional[str]:
    """State-dict prefix of the model's backbone sublayer ("cp.backbone."), None without one."""
    names = [n for n, _ in model.named_sublayers() if n.split(".")[-1] == "backbone"]
    assert len(names) <= 1, names
    return f"{names[0]}." if names else None


def _random_weights(layer_state: Dict[str, paddle.Tensor], path: Path, seed: int) -> Dict:
    """Write random tensors of ``layer_state``'s keys and shapes to ``path`` (no initialiser
    yields them, so equal parameters after building prove the file was loaded)."""
    rng = np.random.default_rng(seed)
    arrays = {
        k: (0.5 + rng.random(v.shape)).astype(str(v.numpy().dtype)) for k, v in layer_state.items()
    }
    paddle.save({k: paddle.to_tensor(a) for k, a in arrays.items()}, str(path))
    return arrays


def _assert_loaded(state: Dict[str, paddle.Tensor], expected: Dict[str, np.ndarray]) -> None:
    assert expected
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key].numpy(), value, err_msg=key)


def _weights_for(model: paddle.nn.Layer, tmp_path: Path):
    """(backbone file, its arrays, model file, its arrays): the model file holds every tensor
    but the backbone's, so one build shows both loads."""
    state = model.state_dict()
    prefix = _backbone_prefix(model)
    head = {k: v for k, v in state.items() if prefix is None or not k.startswith(prefix)}
    model_arrays = _random_weights(head, tmp_path / "model.pdparams", seed=1)
    if prefix is None:
        return None, {}, tmp_path / "model.pdparams", model_arrays
    backbone = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    bb_arrays = _random_weights(backbone, tmp_path / "backbone.pdparams", seed=2)
    expected_bb = {prefix + k: a for k, a in bb_arrays.items()}
    return tmp_path / "backbone.pdparams", expected_bb, tmp_path / "model.pdparams", model_arrays


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_paddleseg_segbuilder_builds_every_config_and_loads_its_weights(config, tmp_path):
    """The issue's script: PaddleSeg's SegBuilder on a shipped config, `pretrained` keys of the
    model and of its backbone pointed at local files."""
    reference = SegBuilder(
        Config(str(config), opts=["model.pretrained=None"] + _null_backbone(config))
    ).model
    bb_file, bb_expected, model_file, model_expected = _weights_for(reference, tmp_path)
    opts = [f"model.pretrained={model_file}"]
    if bb_file is not None:
        opts.append(f"model.backbone.pretrained={bb_file}")
    model = SegBuilder(Config(str(config), opts=opts)).model
    assert type(model) is type(reference)
    assert type(model).__module__.startswith("paddle_stdc.models")
    state = model.state_dict()
    _assert_loaded(state, model_expected)
    if "backbone" in Config(str(config)).model_cfg:
        _assert_loaded(state, bb_expected)
    else:
        assert bb_file is None and len(model_expected) == len(state)


def _null_backbone(config: Path) -> list:
    return ["model.backbone.pretrained=None"] if "backbone" in Config(str(config)).model_cfg else []


# PaddleSeg 2.8's configs/stdcseg/stdc1_seg_cityscapes_1024x512_80k.yml and
# configs/bisenet/bisenet_cityscapes_1024x1024_160k.yml take this form (their _base_ inlined,
# pretrained keys pointed at local files); {extra} adds keys to `model`.
PADDLESEG_FORM = """
batch_size: 2
iters: 10
train_dataset:
  type: {dataset}
  dataset_root: data/none
  train_path: data/none/train.txt
  num_classes: {num_classes}
  transforms:
    - type: Normalize
  mode: train
val_dataset:
  type: {dataset}
  dataset_root: data/none
  val_path: data/none/val.txt
  num_classes: {num_classes}
  transforms:
    - type: Normalize
  mode: val
optimizer:
  type: sgd
  momentum: 0.9
  weight_decay: 4.0e-5
lr_scheduler:
  type: PolynomialDecay
  learning_rate: 0.01
  end_lr: 0
  power: 0.9
loss:
  types:
    - type: CrossEntropyLoss
  coef: [1]
model:
{model}
"""

STDCSEG_FORM = """  type: STDCSeg
  backbone:
    type: {backbone}
    pretrained: {backbone_pretrained}
  pretrained: {pretrained}"""

BISENETV2_FORM = """  type: BiSeNetV2
  num_classes: {num_classes}
  pretrained: {pretrained}"""


def _paddleseg_config(tmp_path: Path, model: str, num_classes: int = 19, **keys) -> Path:
    """A PaddleSeg-form config; Cityscapes unless ``num_classes`` differs (then the generic
    ``Dataset``, whose class count the config names)."""
    dataset = "Cityscapes" if num_classes == 19 else "Dataset"
    text = PADDLESEG_FORM.format(
        dataset=dataset,
        num_classes=num_classes,
        model=model.format(num_classes=num_classes, **keys),
    )
    if dataset == "Cityscapes":  # the class names its classes and files
        drop = ("num_classes: 19", "train_path:", "val_path:")
        text = "\n".join(line for line in text.splitlines() if not any(d in line for d in drop))
    path = tmp_path / "paddleseg_form.yml"
    path.write_text(text)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["STDC1", "STDC2"])
def test_paddleseg_stdcseg_form_loads_model_and_backbone_files(backbone, tmp_path):
    null = _paddleseg_config(
        tmp_path, STDCSEG_FORM, backbone=backbone, backbone_pretrained="null", pretrained="null"
    )
    bb_file, bb_expected, model_file, model_expected = _weights_for(
        SegBuilder(Config(str(null))).model, tmp_path
    )
    # PaddleSeg's own config: ImageNet weights on the backbone, none on the model
    path = _paddleseg_config(
        tmp_path, STDCSEG_FORM, backbone=backbone, backbone_pretrained=bb_file, pretrained="null"
    )
    model = SegBuilder(Config(str(path))).model
    assert isinstance(model, STDCSeg)
    _assert_loaded(model.state_dict(), bb_expected)
    # and both: the backbone's file, then the model's (which holds no backbone tensors here)
    path = _paddleseg_config(
        tmp_path,
        STDCSEG_FORM,
        backbone=backbone,
        backbone_pretrained=bb_file,
        pretrained=model_file,
    )
    state = SegBuilder(Config(str(path))).model.state_dict()
    _assert_loaded(state, bb_expected)
    _assert_loaded(state, model_expected)


@pytest.mark.slow
def test_paddleseg_bisenetv2_form_loads_the_model_file(tmp_path):
    null = _paddleseg_config(tmp_path, BISENETV2_FORM, pretrained="null")
    _, _, model_file, expected = _weights_for(SegBuilder(Config(str(null))).model, tmp_path)
    assert len(expected) == len(SegBuilder(Config(str(null))).model.state_dict())
    path = _paddleseg_config(tmp_path, BISENETV2_FORM, pretrained=model_file)
    _assert_loaded(SegBuilder(Config(str(path))).model.state_dict(), expected)


def test_registered_networks_take_pretrained_and_unwrap_to_our_classes():
    for mgr in (manager.MODELS, manager.BACKBONES):
        own = [n for n, obj in mgr.components_dict.items() if obj.__module__.startswith("paddle_")]
        assert own, mgr.name
        for name in own:
            factory = mgr[name]
            assert "pretrained" in inspect.signature(factory).parameters, name
            assert inspect.unwrap(factory).__name__ == name
    assert inspect.unwrap(manager.MODELS["STDCSeg"]) is STDCSeg
    assert paddle_stdc.models.stdcseg.STDCSeg is STDCSeg  # the module keeps the plain class
    assert "pretrained" not in inspect.signature(STDCSeg).parameters  # no I/O in the network


# ---------------------------------------------------------------- zoo entries as `pretrained`


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLE_STDC_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _converted(name: str, tmp_path: Path) -> Dict[str, np.ndarray]:
    """Put the converted file of entry ``name`` in the cache, from a file of its source written
    by the fixture's weight rule (what the release would be); returns its tensors."""
    entry = zoo.get_pretrained(name)
    source = save_torch_zip(R.checkpoint(R.load_fixture(entry.proof)), tmp_path / "release.pth")
    state = paddle.load(str(zoo.pdparams_for(entry, path=str(source))))
    return {k: np.asarray(v) for k, v in state.items()}


def _uses_count_pad(backbone: STDCNet) -> bool:
    flags = {layer.count_pad for layer in backbone.sublayers() if hasattr(layer, "count_pad")}
    assert len(flags) == 1, flags
    return flags.pop()


@pytest.mark.slow
def test_backbone_entry_through_segbuilder_applies_its_options(tmp_path, cache):
    """``backbone.pretrained: official_stdcnet813_imagenet``: the backbone is built with the
    entry's pooling convention, loads the converted file and computes the source's features."""
    state = _converted("official_stdcnet813_imagenet", tmp_path)
    path = _paddleseg_config(
        tmp_path,
        STDCSEG_FORM,
        backbone="STDC1",
        backbone_pretrained="official_stdcnet813_imagenet",
        pretrained="null",
    )
    backbone = SegBuilder(Config(str(path))).model.cp.backbone
    assert _uses_count_pad(backbone)
    _assert_loaded(backbone.state_dict(), state)
    arrays = R.outputs(R.load_fixture("official_stdc1_imagenet"))["64x128"]
    backbone.eval()
    with paddle.no_grad():
        feat32 = backbone(paddle.to_tensor(arrays["input"]))[-1].numpy()
    assert np.abs(feat32 - arrays["feat32"]).max() <= 1e-4 * np.abs(arrays["feat32"]).max()


@pytest.mark.slow
def test_model_entry_through_segbuilder_rebuilds_the_backbone_with_its_options(tmp_path, cache):
    """``model.pretrained: official_stdc1_seg50`` on STDCSeg: the entry's ``pool_count_pad``
    is a backbone option, so the backbone is built again with it (the config's own keys would
    win); the model then reproduces the official code's logits. Our Builder does the same."""
    name = "official_stdc1_seg50"
    state = _converted(name, tmp_path)
    classes = state[get_model_info(zoo.get_pretrained(name).model).classifier].shape[0]
    path = _paddleseg_config(
        tmp_path,
        STDCSEG_FORM,
        num_classes=classes,
        backbone="STDC1",
        backbone_pretrained="null",
        pretrained=name,
    )
    for build in (SegBuilder, Builder):
        model = build(Config(str(path))).model
        assert _uses_count_pad(model.cp.backbone)
        _assert_loaded(model.state_dict(), state)
    model.eval()
    arrays = R.outputs(R.load_fixture("official_stdc1_seg"))["64x128"]
    with paddle.no_grad():
        logits = our_outputs(model, paddle.to_tensor(arrays["input"]), ["logits"])["logits"]
    assert np.abs(logits - arrays["logits"]).max() <= 1e-4 * np.abs(arrays["logits"]).max()
    # the config's own backbone key wins over the entry's option
    own = path.read_text().replace("type: STDC1", "type: STDC1\n    pool_count_pad: false")
    path.write_text(own)
    assert not _uses_count_pad(SegBuilder(Config(str(path))).model.cp.backbone)


def test_entry_options_through_our_builder_with_a_patched_loader(tmp_path, monkeypatch):
    """Fast check of the option path without weights: a BiSeNetV2 entry's options (wider heads)
    are applied to the class, the loader is called with the entry's name."""
    loaded = []
    monkeypatch.setattr(
        "paddle_stdc.registry.load_pretrained", lambda layer, ref: loaded.append((layer, ref))
    )
    name = "mmseg_bisenetv2_cityscapes"
    path = _paddleseg_config(tmp_path, BISENETV2_FORM, pretrained=name)
    model = SegBuilder(Config(str(path))).model
    assert loaded == [(model, name)]
    options = zoo.get_pretrained(name).model_kwargs
    assert options["head_channels"] == 1024
    assert model.head.conv_1x1.weight.shape[1] == options["head_channels"]  # default: 128
    assert model.aux_head4.conv_1x1.weight.shape[1] == options["aux_channels"][3][-1]


BISENETV1_FORM = """  type: BiSeNetV1
  backbone:
    type: {backbone}
  pretrained: {pretrained}"""


@pytest.mark.slow
def test_model_entry_options_split_between_model_and_backbone(tmp_path, monkeypatch):
    """An mmseg BiSeNetV1 entry needs ``ffm`` (a BiSeNetV1 argument) and ``stem='plain'`` (a
    ResNet one): the model takes the first, the backbone is built again with the second; a
    backbone type that fixes its stem (ResNet18V1c) gets a clear error instead."""
    from paddle_stdc.models.bisenetv1 import _FFMS

    monkeypatch.setattr("paddle_stdc.registry.load_pretrained", lambda layer, ref: None)
    name = "mmseg_bisenetv1_r18_cityscapes"
    assert zoo.get_pretrained(name).model_kwargs == {"stem": "plain", "ffm": "conv_bn"}
    backbone = "ResNet\n    depth: 18"
    path = _paddleseg_config(tmp_path, BISENETV1_FORM, backbone=backbone, pretrained=name)
    model = SegBuilder(Config(str(path))).model
    assert isinstance(model.ffm, _FFMS["conv_bn"])
    convs = [p.shape[-1] for p in model.cp.backbone.stem.parameters() if p.ndim == 4]
    assert convs[0] == 7  # the plain 7x7 stem; the deep stem starts with a 3x3
    path = _paddleseg_config(tmp_path, BISENETV1_FORM, backbone="ResNet18V1c", pretrained=name)
    with pytest.raises(ConfigError, match=r"stem.*type: ResNet"):  # the tools' one-line error
        _ = Builder(load_config(str(path))).model
    with pytest.raises(RuntimeError, match=r"stem.*type: ResNet"):  # in PaddleSeg's wrapper
        _ = SegBuilder(Config(str(path))).model


def test_missing_weights_are_one_clear_error(tmp_path):
    """A missing file is named by PaddleSeg's builder (in its RuntimeError) and by ours (as
    itself, for the tools' one-line errors)."""
    missing = tmp_path / "nope.pdparams"
    path = _paddleseg_config(
        tmp_path, STDCSEG_FORM, backbone="STDC1", backbone_pretrained=missing, pretrained="null"
    )
    with pytest.raises(RuntimeError, match="nope.pdparams"):
        _ = SegBuilder(Config(str(path))).model
    with pytest.raises(WeightsUnavailableError, match="nope.pdparams"):
        _ = Builder(load_config(str(path))).model


def test_pretrained_on_a_loss_is_a_config_error(tmp_path):
    """Only networks take `pretrained`; the validator names the key elsewhere."""
    path = _paddleseg_config(
        tmp_path, STDCSEG_FORM, backbone="STDC1", backbone_pretrained="null", pretrained="null"
    )
    validate_config(load_config(str(path)))
    text = path.read_text().replace(
        "- type: CrossEntropyLoss", "- {type: CrossEntropyLoss, pretrained: x}"
    )
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"loss.types\[0\].pretrained: CrossEntropyLoss takes no"):
        validate_config(load_config(str(path)))
