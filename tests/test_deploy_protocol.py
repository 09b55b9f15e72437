"""Deploy reproduces evaluation: masks of an exported model (Paddle Inference, CPU) equal the
masks of tools/val.py's code path (val dataset -> infer_logits -> argmax) for every shipped
config, with the config's protocol and with Seg50/Seg75; plus the deploy.yaml schema."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
import paddle
import pytest
import yaml

import paddle_stdc
from deploy import schema
from deploy.python.predictor import InputShapeError, Predictor, load_deploy_config
from paddle_stdc.export import export_model

from .conftest import ROOT, all_configs

CONFIGS = all_configs()
# Tiny sizes for the synthetic 128x64 images; the transform types and their order are kept.
TINY_TARGET = {"Padding": [144, 80], "Resize": [80, 56]}
RESIZE = {"type": "Resize", "target_size": [80, 56]}
#: (config, eval_scale override or None = the config's own, extra val Resize first)
CASES = [(c, s, False) for c in CONFIGS for s in (None, 0.5, 0.75)] + [
    (ROOT / "configs/stdc1_seg_cityscapes_1024x512_80k.yml", None, True),
    (ROOT / "configs/bisenetv2_voc12aug_512x512_40k.yml", 0.75, True),
    (ROOT / "configs/bisenetv1_r18-d32_cityscapes_1024x1024_160k.yml", 0.5, True),
]


def test_every_shipped_config_is_covered():
    assert len(CONFIGS) >= 10
    assert {c for c, _, _ in CASES} == set(CONFIGS)


def _tiny_transforms(transforms: List[Dict], add_resize: bool) -> List[Dict]:
    out = [RESIZE] if add_resize else []
    for t in transforms:
        t = dict(t)
        if t["type"] in TINY_TARGET:
            t["target_size"] = TINY_TARGET[t["type"]]
        out.append(t)
    return out


def _case_config(tmp_path: Path, config: Path, scale: Optional[float], add_resize: bool):
    """A config inheriting ``config`` with the case's test_config / tiny val transforms."""
    from paddle_stdc.engine.config import load_config

    base = load_config(str(config), pretrained=False)
    doc: Dict = {"_base_": str(config)}
    if scale is not None:
        doc["test_config"] = {**(base.dic.get("test_config") or {}), "eval_scale": scale}
    transforms = base.val_dataset_cfg.get("transforms", [])
    tiny = _tiny_transforms(transforms, add_resize)
    if tiny != transforms:
        doc["val_dataset"] = {"transforms": tiny}
    path = tmp_path / "case.yml"
    path.write_text(yaml.safe_dump(doc))
    return load_config(str(path), pretrained=False)


def _val_dataset(builder, root: Path, num_classes: int):
    """The config's val transforms over the synthetic images, as the project's val datasets
    read them (PaddleSeg's generic file-list ``Dataset``)."""
    from paddle_stdc.data.datasets import Dataset

    images = sorted((root / "leftImg8bit" / "val").rglob("*.png"))
    lines = []
    for img in images:
        label = str(img).replace("leftImg8bit", "gtFine", 1)
        label = label.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")
        lines.append(f"{img.relative_to(root)} {Path(label).relative_to(root)}")
    (root / "val_list.txt").write_text("\n".join(lines) + "\n")
    cfg = builder.config.val_dataset_cfg
    transforms = [builder.build_component(t) for t in cfg.get("transforms", [])]
    return Dataset("val", str(root), transforms, num_classes, val_path=str(root / "val_list.txt"))


def _val_masks(builder, dataset) -> List[np.ndarray]:
    """tools/val.py's per-sample path: evaluate()'s loop body."""
    from paddle_stdc.engine.inference import EvalProtocol, infer_logits

    protocol = EvalProtocol(**builder.test_config())
    model = builder.model
    model.eval()
    masks = []
    with paddle.no_grad():
        for i in range(len(dataset)):
            data = dataset[i]
            img = paddle.to_tensor(np.asarray(data["img"])[None])
            logits = infer_logits(model, img, data.get("trans_info"), protocol)
            masks.append(paddle.argmax(logits, axis=1).numpy()[0])
    return masks


@pytest.mark.slow
@pytest.mark.parametrize(
    "config,scale,add_resize", CASES,
    ids=[f"{c.stem}-{s or 'cfg'}{'-resize' if r else ''}" for c, s, r in CASES],
)  # fmt: skip
def test_deployed_masks_equal_evaluation(config, scale, add_resize, tmp_path, synthetic_root):
    from paddle_stdc.engine.config import Builder

    paddle.seed(0)
    cfg = _case_config(tmp_path, config, scale, add_resize)
    builder = Builder(cfg)
    model = builder.model
    k = model.num_classes
    dataset = _val_dataset(builder, synthetic_root, max(k, 19))  # labels are not compared
    expected = _val_masks(builder, dataset)
    export_dir = tmp_path / "export"
    export_model(model, export_dir, cfg.val_dataset_cfg["transforms"], k,
                 test_config=builder.test_config())  # fmt: skip
    deploy = load_deploy_config(export_dir)
    assert deploy["version"] == schema.SCHEMA_VERSION
    assert deploy["eval_scale"] == builder.test_config().get("eval_scale", 1.0)
    if add_resize:
        assert deploy["output_op"] == "none"  # logits: resized back before the argmax
    predictor = Predictor(export_dir)
    images = [cv2.imread(str(dataset.file_list[i][0])) for i in range(len(dataset))]
    got = predictor.predict(images)
    agree = [float((g == e).mean()) for g, e in zip(got, expected)]
    assert [g.shape for g in got] == [e.shape for e in expected]
    print(f"{config.stem} scale={deploy['eval_scale']} resize={add_resize}: {min(agree):.5f}")
    assert min(agree) >= 0.999, agree


def test_eval_scale_changes_the_graph(tmp_path):
    """Seg50 really runs at half resolution: its masks differ from full resolution's."""
    paddle.seed(0)
    model = paddle_stdc.create_model("stdc1_seg", num_classes=5)
    image = np.random.RandomState(0).randint(0, 255, (64, 96, 3)).astype(np.uint8)
    masks = {}
    for scale in (1.0, 0.5):
        export_model(model, tmp_path / str(scale), [{"type": "Normalize"}], 5, eval_scale=scale)
        (masks[scale],) = Predictor(tmp_path / str(scale)).predict([image])
    assert masks[0.5].shape == masks[1.0].shape == (64, 96)
    assert (masks[0.5] != masks[1.0]).mean() > 0.01


@pytest.mark.slow
def test_onnx_runtime_gives_the_same_masks_with_eval_scale_and_resize(tmp_path):
    pytest.importorskip("onnxruntime")
    from deploy.python.predictor import OnnxPredictor

    paddle.seed(0)
    model = paddle_stdc.create_model("stdc1_seg", num_classes=5)
    transforms = [RESIZE, {"type": "Normalize"}]
    export_model(model, tmp_path, transforms, 5, fmt="onnx", eval_scale=0.75)
    image = np.random.RandomState(0).randint(0, 255, (70, 110, 3)).astype(np.uint8)
    (a,) = Predictor(tmp_path).predict([image])
    (b,) = OnnxPredictor(tmp_path).predict([image])
    assert a.shape == b.shape == (70, 110)
    assert (a == b).mean() >= 0.999


def test_fixed_shape_export_names_both_shapes(tmp_path):
    paddle.seed(0)
    model = paddle_stdc.create_model("bisenetv2", num_classes=3)
    export_model(model, tmp_path, [{"type": "Normalize"}], 3, input_shape=[1, 3, 64, 64])
    predictor = Predictor(tmp_path)
    image = np.zeros((48, 80, 3), np.uint8)
    with pytest.raises(InputShapeError, match=r"\[1, 3, 48, 80\].*\[1, 3, 64, 64\]"):
        predictor.predict([image])
    with pytest.raises(InputShapeError, match="input_shape"):
        predictor.run(np.zeros((2, 3, 64, 64), np.float32))  # batch size fixed to 1 too
    (mask,) = predictor.predict([np.zeros((64, 64, 3), np.uint8)])
    assert mask.shape == (64, 64)


# ------------------------------------------------------------------------ deploy.yaml schema


def _write(tmp_path: Path, deploy: Dict) -> None:
    for name in ("model.json", "model.pdiparams"):
        (tmp_path / name).write_text("x")
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump({"Deploy": deploy}))


def _v2(**changes) -> Dict:
    deploy = schema.build_deploy(
        transforms=schema.deploy_transforms([{"type": "Normalize"}]),
        input_shape=[-1, 3, -1, -1], output_op="argmax", num_classes=4, eval_scale=0.5,
    )  # fmt: skip
    deploy.update(changes)
    return deploy


def test_schema_round_trip_and_version_1(tmp_path):
    _write(tmp_path, _v2())
    deploy = schema.read_deploy(tmp_path)
    assert deploy["version"] == schema.SCHEMA_VERSION == 3 and deploy["eval_scale"] == 0.5
    assert "openvino_int8" not in deploy  # optional, null by default (read with .get)
    v2 = {k: v for k, v in _v2(version=2).items() if not k.startswith("openvino")}
    _write(tmp_path, v2)
    assert schema.read_deploy(tmp_path)["version"] == 2  # a version-2 file is still read
    v1 = _v2()
    del v1["version"], v1["eval_scale"]
    _write(tmp_path, v1)
    deploy = schema.read_deploy(tmp_path)
    assert deploy["version"] == 1 and deploy["eval_scale"] == 1.0 and deploy["source"] == {}


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"version": 4}, "Deploy.version 4"),
        ({"eval_scale": 0}, "Deploy.eval_scale 0"),
        ({"eval_scale": "half"}, "Deploy.eval_scale 'half'"),
        ({"input_shape": [1, 3, 64]}, "Deploy.input_shape"),
        ({"output_op": "max"}, "Deploy.output_op 'max'"),
        ({"transforms": [{"type": "Resize", "target_size": [64]}]}, r"transforms\[0\] Resize"),
        ({"transforms": [{"type": "Resize", "interp": "RANDOM", "target_size": [8, 8]}]},
         "Resize.interp 'RANDOM'"),
        ({"transforms": [{"type": "Crop"}]}, "'Crop' is not supported"),
        ({"onnx": "model.onnx"}, "Deploy.onnx file model.onnx does not exist"),
        ({"openvino_int8": "deploy.yaml"}, "Deploy.openvino_int8 deploy.yaml has no weights"),
    ],
)  # fmt: skip
def test_schema_errors_name_file_and_key(tmp_path, changes, match):
    _write(tmp_path, _v2(**changes))
    with pytest.raises(schema.DeployConfigError, match=match) as err:
        schema.read_deploy(tmp_path)
    assert str(tmp_path / "deploy.yaml") in str(err.value)


def test_one_error_class_and_one_predictor_module():
    """server.py imports the packaged predictor: one DeployConfigError for everyone."""
    import sys

    import deploy.python.predictor as predictor
    import deploy.python.quantize as quantize
    import deploy.serving.server as server

    assert server.Predictor is predictor.Predictor
    assert predictor.DeployConfigError is schema.DeployConfigError
    assert quantize.DeployConfigError is schema.DeployConfigError
    assert "predictor" not in sys.modules  # nobody imported it as a top-level module


def _imports(path: Path) -> List[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_deploy_stays_independent_of_training_code():
    files = sorted((ROOT / "deploy").rglob("*.py"))
    assert files
    for path in files:
        banned = [n for n in _imports(path) if n.split(".")[0] in ("paddle_stdc", "paddleseg")]
        assert not banned, f"{path} imports {banned}"
        assert "sys.path" not in path.read_text(), f"{path} edits sys.path"
