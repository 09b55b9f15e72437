"""Every config under configs/ builds with our components and pretrained weights disabled."""

from __future__ import annotations

import paddle
import pytest
from paddleseg.cvlibs import manager

import paddle_stdc  # noqa: F401
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.registry import OWN_COMPONENTS

from .conftest import all_configs

CONFIGS = all_configs()


def test_configs_were_found():
    assert len(CONFIGS) >= 5
    names = {p.name for p in CONFIGS}
    for expected in (
        "stdc1_seg_cityscapes_1024x512_80k.yml",
        "stdc2_seg_cityscapes_1024x512_80k.yml",
        "stdc1_seg_voc12aug_512x512_40k.yml",
        "stdc2_seg_voc12aug_512x512_40k.yml",
        "bisenetv1_r18-d32_cityscapes_1024x1024_160k.yml",
        "bisenetv1_r50-d32_cityscapes_1024x1024_160k.yml",
        "bisenetv2_cityscapes_1024x1024_160k.yml",
        "bisenetv2-fp16_cityscapes_1024x1024_160k.yml",
        "bisenetv1_r18-d32_voc12aug_512x512_40k.yml",
        "bisenetv2_voc12aug_512x512_40k.yml",
        "stdc1_seg50_cityscapes_1024x512_60k_official.yml",
        "stdc1_seg75_cityscapes_1024x512_60k_official.yml",
        "stdc2_seg50_cityscapes_1024x512_60k_official.yml",
        "stdc2_seg75_cityscapes_1024x512_60k_official.yml",
    ):
        assert expected in names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_with_our_components(config):
    cfg = load_config(str(config), pretrained=False)
    builder = Builder(cfg)
    model = builder.model
    assert type(model).__module__.startswith("paddle_stdc.models")
    for loss in builder.loss["types"]:
        assert type(loss).__module__.startswith("paddle_stdc.losses"), type(loss)
    optimizer = builder.optimizer
    assert isinstance(optimizer, paddle.optimizer.Optimizer)
    # Losses own no parameters (DetailAggregateLoss.fuse_kernel is a buffer): the optimizer
    # trains exactly the model's.
    assert all(loss.parameters() == [] for loss in builder.loss["types"])
    trainable = {id(p) for p in model.parameters() if not p.stop_gradient}
    groups = [g["params"] if isinstance(g, dict) else [g] for g in optimizer._param_groups]
    optimized = {id(p) for group in groups for p in group}
    assert trainable <= optimized <= {id(p) for p in model.parameters()}
    assert builder.lr_scheduler is not None
    for transform_cfg in cfg.train_dataset_cfg["transforms"]:
        builder.build_component(transform_cfg)
    assert builder.val_transforms


def test_stdc_recipes_match_paddleseg():
    cfg = load_config("configs/stdc2_seg_cityscapes_1024x512_80k.yml", pretrained=True)
    d = cfg.dic
    assert d["batch_size"] == 12 and d["iters"] == 80000
    assert d["model"]["backbone"] == {
        "type": "STDC2",
        "pretrained": "https://bj.bcebos.com/paddleseg/dygraph/STDCNet2.tar.gz",
    }
    assert [t["type"] for t in d["loss"]["types"]] == ["OhemCrossEntropyLoss"] * 3 + [
        "DetailAggregateLoss"
    ]
    assert d["optimizer"] == {"type": "SGD", "momentum": 0.9, "weight_decay": 4.0e-5}
    assert d["lr_scheduler"]["learning_rate"] == 0.01 and d["lr_scheduler"]["power"] == 0.9
    crop = [t for t in d["train_dataset"]["transforms"] if t["type"] == "RandomPaddingCrop"]
    assert crop[0]["crop_size"] == [1024, 512]
    voc = load_config("configs/stdc1_seg_voc12aug_512x512_40k.yml").dic
    assert voc["train_dataset"]["mode"] == "trainaug" and voc["iters"] == 40000
    assert voc["batch_size"] == 4


def test_every_config_names_its_source_recipe():
    for path in CONFIGS:
        header = path.read_text().splitlines()[0]
        assert header.startswith("#"), f"{path.name} has no header comment"
        text = path.read_text()
        assert (
            "Source recipe" in text or "No published reference" in text or ("quick start" in text)
        ), path.name


def test_bisenet_recipes():
    r18 = load_config("configs/bisenetv1_r18-d32_cityscapes_1024x1024_160k.yml").dic
    assert r18["batch_size"] == 4 and r18["iters"] == 160000
    assert r18["optimizer"]["weight_decay"] == 5.0e-4
    assert r18["lr_scheduler"]["learning_rate"] == 0.025
    assert r18["lr_scheduler"]["warmup_iters"] == 1000
    crop = [t for t in r18["train_dataset"]["transforms"] if t["type"] == "RandomPaddingCrop"]
    assert crop[0]["crop_size"] == [1024, 1024]
    r50 = load_config("configs/bisenetv1_r50-d32_cityscapes_1024x1024_160k.yml").dic
    assert r50["model"]["backbone"]["type"] == "ResNet50V1c"
    assert r50["lr_scheduler"]["learning_rate"] == 0.05
    fp16 = load_config("configs/bisenetv2-fp16_cityscapes_1024x1024_160k.yml").dic
    assert fp16["precision"] == "fp16" and len(fp16["loss"]["types"]) == 5


def test_paddleseg_registry_yields_our_classes():
    for manager_name, own in OWN_COMPONENTS.items():
        mgr = {m.name: m for m in (manager.MODELS, manager.BACKBONES, manager.LOSSES)}.get(
            manager_name
        )
        if mgr is None:
            continue
        for name, obj in own.items():
            assert mgr[name] is obj
    assert manager.MODELS["STDCSeg"].__module__ == "paddle_stdc.models.stdcseg"
    assert manager.BACKBONES["STDC1"].__module__ == "paddle_stdc.models.backbones.stdcnet"
