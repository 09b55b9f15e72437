"""Deploy reproduces evaluation: masks of tools/predict.py and of an exported model (Paddle
Inference, CPU; infer.py's and serving's image decoding) equal the masks of tools/val.py's code
path (val dataset -> infer_logits -> argmax) up to exact ties, for every shipped config, with
the config's protocol and with Seg50/Seg75, and with a val Resize; plus the deploy.yaml schema."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Tuple

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

#: Issue 19's case: generated 512x256 (W x H) images, a val ``Resize`` to 320x160 and a
#: per-channel ``Normalize`` (so a swapped channel order would show), on STDC1 whose BatchNorm
#: statistics and affine parameters are random (so every rounding of the input matters).
RESIZE_PIPELINE = [
    {"type": "Resize", "target_size": [320, 160]},
    {"type": "Normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
]
#: Two paths may pick different classes only where the top two logits are this close.
TIE = 1e-4


def _randomize_batch_norm(model: paddle.nn.Layer, seed: int = 0) -> int:
    """Random running mean/variance, weight and bias in every BatchNorm2D; returns the count."""
    rng = np.random.RandomState(seed)
    layers = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    for bn in layers:
        c = bn._mean.shape[0]
        for value, (lo, hi) in ((bn._mean, (-0.5, 0.5)), (bn._variance, (0.25, 4.0)),
                                (bn.weight, (0.5, 1.5)), (bn.bias, (-0.5, 0.5))):  # fmt: skip
            value.set_value(rng.uniform(lo, hi, c).astype("float32"))
    return len(layers)


def _margins(logits: np.ndarray) -> np.ndarray:
    """Top logit minus the second one, per pixel, of (K, H, W) logits."""
    top2 = np.partition(logits, -2, axis=0)[-2:]
    return top2[1] - top2[0]


def _disagreements(name: str, got: List[np.ndarray], val: List[np.ndarray],
                   margins: List[np.ndarray]) -> int:  # fmt: skip
    """Pixels where ``got`` differs from tools/val.py's masks; each must be a near-tie."""
    assert [g.shape for g in got] == [v.shape for v in val], name
    count = 0
    for g, v, m in zip(got, val, margins):
        differ = g.astype(np.int64) != v.astype(np.int64)
        assert (m[differ] < TIE).all(), (
            f"{name}: {int(differ.sum())} pixels differ from tools/val.py's, the largest top-2 "
            f"logit margins there: {np.sort(m[differ])[-5:]}"
        )
        count += int(differ.sum())
    return count


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


def _val_masks(builder, dataset) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """tools/val.py's per-sample path (evaluate()'s loop body): masks and logit margins."""
    from paddle_stdc.engine.inference import EvalProtocol, infer_logits

    protocol = EvalProtocol(**builder.test_config())
    model = builder.model
    model.eval()
    masks, margins = [], []
    with paddle.no_grad():
        for i in range(len(dataset)):
            data = dataset[i]
            img = paddle.to_tensor(np.asarray(data["img"])[None])
            logits = infer_logits(model, img, data.get("trans_info"), protocol).numpy()[0]
            masks.append(logits.argmax(axis=0))
            margins.append(_margins(logits))
    return masks, margins


def _predicted(builder, images: List[Path], save_dir: Path) -> List[np.ndarray]:
    """tools/predict.py's masks (its palette PNGs read back as class ids)."""
    from PIL import Image

    from paddle_stdc.engine.inference import EvalProtocol
    from paddle_stdc.engine.predictor import predict

    protocol = EvalProtocol(**builder.test_config())
    palette = np.zeros((256, 3), np.uint8)
    written = predict(builder.model, builder.val_transforms, images, save_dir, palette, protocol)
    return [np.asarray(Image.open(p)) for p in written]


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
    expected, margins = _val_masks(builder, dataset)
    images = [Path(dataset.file_list[i][0]) for i in range(len(dataset))]
    predicted = _predicted(builder, images, tmp_path / "predict")
    assert _disagreements("tools/predict.py", predicted, expected, margins) == 0
    export_dir = tmp_path / "export"
    export_model(model, export_dir, cfg.val_dataset_cfg["transforms"], k,
                 test_config=builder.test_config())  # fmt: skip
    deploy = load_deploy_config(export_dir)
    assert deploy["version"] == schema.SCHEMA_VERSION
    assert deploy["eval_scale"] == builder.test_config().get("eval_scale", 1.0)
    if add_resize:
        assert deploy["output_op"] == "none"  # logits: resized back before the argmax
    predictor = Predictor(export_dir)
    got = predictor.predict([cv2.imread(str(p)) for p in images])
    differ = _disagreements("export", got, expected, margins)
    pixels = sum(e.size for e in expected)
    print(f"{config.stem} scale={deploy['eval_scale']} resize={add_resize}: {differ} of "
          f"{pixels} pixels differ, at ties")  # fmt: skip
    assert differ <= pixels * 1e-3


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_predict_val_export_and_serving_see_the_same_tensor(tmp_path):
    """Issue 19: tools/predict.py, tools/val.py, deploy/python/infer.py and serving turn an
    image into the same tensor, so with a val Resize and random BatchNorm statistics their
    masks differ only at exact ties (before they did: predict vs val on 482 of 262144 pixels,
    with top-2 margins up to 0.012)."""
    from PIL import Image

    from deploy.python.infer import predict_images
    from deploy.serving.codec import decode_image
    from paddle_stdc.data.synthetic import make_synthetic_cityscapes
    from paddle_stdc.engine.config import Builder, load_config

    root = make_synthetic_cityscapes(tmp_path / "data", 0, 2, size=(512, 256), seed=19)
    path = tmp_path / "case.yml"
    doc = {"_base_": str(ROOT / "configs/stdc1_seg_cityscapes_1024x512_80k.yml"),
           "val_dataset": {"dataset_root": str(root), "transforms": RESIZE_PIPELINE}}  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    builder = Builder(load_config(str(path), pretrained=False))
    paddle.seed(0)
    model = builder.model
    assert _randomize_batch_norm(model) > 10
    dataset = builder.val_dataset  # the Cityscapes val set tools/val.py evaluates
    assert np.asarray(dataset[0]["img"]).shape == (3, 160, 320)
    expected, margins = _val_masks(builder, dataset)
    assert all(m.shape == (256, 512) for m in expected)
    assert len(np.unique(np.concatenate([m.ravel() for m in expected]))) > 1  # not constant
    images = [Path(dataset.file_list[i][0]) for i in range(len(dataset))]
    predicted = _predicted(builder, images, tmp_path / "predict")

    export_model(model, tmp_path / "export", RESIZE_PIPELINE, model.num_classes,
                 test_config=builder.test_config())  # fmt: skip
    predictor = Predictor(tmp_path / "export")
    predict_images(predictor, images, tmp_path / "infer", 1, np.zeros((256, 3), np.uint8))
    inferred = [np.asarray(Image.open(tmp_path / "infer" / f"{p.stem}.png")) for p in images]
    served = predictor.predict([decode_image(p.read_bytes(), 10**8) for p in images])

    counts = {name: _disagreements(name, got, expected, margins)
              for name, got in (("tools/predict.py", predicted), ("infer.py", inferred),
                                ("serving", served))}  # fmt: skip
    pixels = sum(m.size for m in expected)
    print(f"pixels differing from tools/val.py's masks, of {pixels}: {counts}")
    assert counts["tools/predict.py"] == 0  # the same dygraph program on the same tensor
    assert max(counts.values()) <= pixels * 1e-4


#: Val pipelines deploy implements (transform types and options), for the tensor comparison.
PIPELINES = {
    "normalize": [{"type": "Normalize"}],
    "resize": RESIZE_PIPELINE,
    "resize-cubic-padding": [{"type": "Resize", "target_size": [100, 50], "interp": "CUBIC"},
                             {"type": "Padding", "target_size": [112, 64]},
                             {"type": "Normalize", "mean": [0.4, 0.5, 0.6],
                              "std": [0.2, 0.3, 0.4]}],
    "padding-area": [{"type": "Padding", "target_size": [136, 72]},
                     {"type": "Resize", "target_size": [64, 32], "interp": "AREA"},
                     {"type": "Normalize"}],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_val_predict_and_deploy_make_the_same_tensor(name, synthetic_root):
    """The tensor itself, bit for bit: the val dataset's sample, tools/predict.py's
    load_model_input and deploy's preprocess (uint8 resize/padding, then Normalize)."""
    from paddleseg.cvlibs import manager

    from deploy.python.predictor import preprocess
    from paddle_stdc.data.datasets import Cityscapes, load_model_input

    configs = PIPELINES[name]
    transforms = [manager.TRANSFORMS[t["type"]](**{k: v for k, v in t.items() if k != "type"})
                  for t in configs]  # fmt: skip
    dataset = Cityscapes(transforms, dataset_root=str(synthetic_root), mode="val")
    deploy_side = schema.deploy_transforms(configs)
    assert len(dataset) >= 2
    for i in range(len(dataset)):
        path = dataset.file_list[i][0]
        val = dataset[i]
        predict = load_model_input(path, dataset.transforms)
        prepared = preprocess(cv2.imread(path, cv2.IMREAD_COLOR), deploy_side)
        assert val["img"].dtype == predict["img"].dtype == prepared.tensor.dtype == np.float32
        assert np.array_equal(val["img"], predict["img"])
        assert np.array_equal(val["img"], prepared.tensor)
        assert val["trans_info"] == predict["trans_info"] == prepared.undo


def test_predict_reads_as_the_val_dataset_without_uint8_transforms(synthetic_root):
    """With a transform that needs float32 (PaddleSeg's own Normalize), evaluation and
    prediction both fall back to PaddleSeg's float32 reading: still one tensor."""
    import paddleseg.transforms.transforms as stock

    from paddle_stdc.data.datasets import Cityscapes, load_model_input
    from paddle_stdc.data.transforms import takes_uint8

    transforms = [stock.Resize(target_size=(100, 50)), stock.Normalize()]
    dataset = Cityscapes(transforms, dataset_root=str(synthetic_root), mode="val")
    assert not takes_uint8(dataset.transforms)
    predict = load_model_input(dataset.file_list[0][0], dataset.transforms)
    assert np.array_equal(dataset[0]["img"], predict["img"])


def _encoded_images(tmp_path: Path) -> Dict[str, Path]:
    """One image in each form a user may send: colour PNG/JPEG, a JPEG rotated by its EXIF
    orientation tag, grey, RGBA, 16-bit and palette PNGs."""
    from PIL import Image

    rng = np.random.RandomState(0)
    rgb = rng.randint(0, 256, (40, 60, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    files = {
        "png": (Image.fromarray(rgb), {}),
        "jpg": (Image.fromarray(rgb), {"quality": 90}),
        "exif.jpg": (Image.fromarray(rgb), {"exif": exif.tobytes()}),
        "grey.png": (Image.fromarray(rgb[..., 0]), {}),
        "rgba.png": (Image.fromarray(np.dstack([rgb, rgb[..., :1]])), {}),
        "16bit.png": (Image.fromarray(rgb[..., 1].astype(np.uint16) * 257), {}),
        "palette.png": (Image.fromarray(rgb).convert("P"), {}),
    }
    out = {}
    for name, (image, options) in files.items():
        out[name] = tmp_path / f"image.{name}"
        image.save(out[name], format="JPEG" if name.endswith("jpg") else "PNG", **options)
    return out


def test_serving_infer_val_and_predict_decode_an_image_alike(tmp_path):
    """Serving decodes request bytes (cv2.imdecode), infer.py and the training side read files
    (cv2.imread): the same BGR uint8 array for PNG and JPEG, EXIF orientation included."""
    from deploy.python.infer import _read_image
    from deploy.serving.codec import decode_image
    from paddle_stdc.data.datasets import read_image

    images = _encoded_images(tmp_path)
    for name, path in images.items():
        served = decode_image(path.read_bytes(), 10**6)
        assert served.dtype == np.uint8 and served.ndim == 3, name
        assert np.array_equal(served, _read_image(path)), name
        assert np.array_equal(served, read_image(str(path))), name
    assert read_image(str(images["exif.jpg"])).shape == (60, 40, 3)  # rotated as displayed


# ------------------------------------------------------------------------ deploy.yaml schema


def _write(tmp_path: Path, deploy: Dict) -> None:
    for name in ("model.json", "model.pdiparams"):
        (tmp_path / name).write_text("x")
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump({"Deploy": deploy}))


def _deploy(**changes) -> Dict:
    deploy = schema.build_deploy(
        transforms=schema.deploy_transforms([{"type": "Normalize"}]),
        input_shape=[-1, 3, -1, -1], output_op="argmax", num_classes=4, eval_scale=0.5,
    )  # fmt: skip
    deploy.update(changes)
    return deploy


def test_schema_round_trip_and_version_1(tmp_path):
    _write(tmp_path, _deploy())
    deploy = schema.read_deploy(tmp_path)
    assert deploy["version"] == schema.SCHEMA_VERSION == 3 and deploy["eval_scale"] == 0.5
    assert "openvino_int8" not in deploy  # optional, null by default (read with .get)
    v2 = {k: v for k, v in _deploy(version=2).items()
          if not k.startswith("openvino") and k != "class_names"}  # fmt: skip
    _write(tmp_path, v2)
    assert schema.read_deploy(tmp_path)["version"] == 2  # a version-2 file is still read
    v1 = _deploy()
    del v1["version"], v1["eval_scale"], v1["class_names"]
    _write(tmp_path, v1)
    deploy = schema.read_deploy(tmp_path)
    assert deploy["version"] == 1 and deploy["eval_scale"] == 1.0 and deploy["source"] == {}


def test_class_names_and_palette_travel_and_version_2_still_reads(tmp_path):
    names, palette = ["road", "car", "sky", "person"], [[1, 2, 3]] * 4
    _write(tmp_path, _deploy(class_names=names, palette=palette))
    deploy = schema.read_deploy(tmp_path)
    assert deploy["class_names"] == names and deploy["palette"] == palette
    assert schema.class_names_of(deploy) == names
    assert schema.class_names_of(deploy, ["a", "b", "c", "d"]) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="3 class names for an export with 4 classes"):
        schema.class_names_of(deploy, ["a", "b", "c"])
    with pytest.raises(ValueError, match="3 class names for 4 classes"):
        schema.build_deploy(transforms=[], input_shape=[-1, 3, -1, -1], output_op="argmax",
                            num_classes=4, class_names=["a", "b", "c"])  # fmt: skip
    # A version-2 file (before class names): read, names absent -> ids, palette as written.
    v2 = _deploy(version=2, palette=palette)
    del v2["class_names"]
    _write(tmp_path, v2)
    deploy = schema.read_deploy(tmp_path)
    assert deploy["version"] == 2 and deploy.get("class_names") is None
    assert deploy["palette"] == palette and schema.class_names_of(deploy) is None
    # ... except that a Cityscapes/VOC source config was recognised by its name before v3
    v2.update(num_classes=19, palette=None, source={"config": "configs/x_cityscapes_1.yml"})
    _write(tmp_path, v2)
    assert schema.class_names_of(schema.read_deploy(tmp_path))[13] == "car"


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"version": 4}, "Deploy.version 4"),
        ({"class_names": ["a", "b"]}, "Deploy.class_names has 2 names for num_classes 4"),
        ({"class_names": ["a", "b", None, "d"]}, "Deploy.class_names must be a list"),
        ({"palette": [[0, 0, 0], [1, 2, 300]]}, r"Deploy.palette must be a list of \[R, G, B\]"),
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
    _write(tmp_path, _deploy(**changes))
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
