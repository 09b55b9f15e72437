"""Evaluation loop and inference modes with small deterministic fake models."""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddleseg.datasets import Dataset as PaddleSegDataset
from paddleseg.transforms import Normalize, Padding, Resize

from paddle_stdc.engine import runtime as runtime_module
from paddle_stdc.engine.evaluator import evaluate
from paddle_stdc.engine.inference import (
    EVAL_PRESETS,
    EvalProtocol,
    aug_logits,
    infer_logits,
    model_logits,
    reverse_transform,
    slide_logits,
)

K = 4


class PixelModel(paddle.nn.Layer):
    """Decodes the class from channel 0 (value * scale + offset); logits = -|k - class|.

    ``ramp`` adds a bias growing along the crop's width and height, so flips and window
    placement change the logits. Records every input shape it sees.
    """

    def __init__(self, scale: float = 1.0, offset: float = 0.0, ramp: float = 0.0) -> None:
        super().__init__()
        self.scale, self.offset, self.ramp = scale, offset, ramp
        self.seen_shapes = []

    def forward(self, x):
        self.seen_shapes.append(list(x.shape))
        value = x[:, 0:1] * self.scale + self.offset
        classes = paddle.arange(K, dtype="float32").reshape([1, K, 1, 1])
        logits = -paddle.abs(classes - value)
        if self.ramp:
            h, w = x.shape[2:]
            ramp_x = paddle.linspace(0, 1, w).reshape([1, 1, 1, w])
            ramp_y = paddle.linspace(0, 0.5, h).reshape([1, 1, h, 1])
            steps = paddle.arange(K, dtype="float32").reshape([1, K, 1, 1])
            logits = logits + self.ramp * steps * (ramp_x + ramp_y)
        return [logits]


def conv_model(seed: int = 0) -> paddle.nn.Layer:
    """A fixed random 1x1 convolution: translation-equivariant, pixel-independent."""
    paddle.seed(seed)
    conv = paddle.nn.Conv2D(3, K, 1)

    class Conv(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return [self.conv(x)]

    return Conv()


class ArrayDataset(paddle.io.Dataset):
    """PaddleSeg val-mode samples from label arrays: img (3, H, W) carries the class id."""

    num_classes, ignore_index = K, 255

    def __init__(self, labels, pad_to=None):
        self.labels, self.pad_to = labels, pad_to
        self.accessed = []

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        self.accessed.append(idx)
        label = self.labels[idx]
        img = np.repeat(np.where(label == 255, 0, label)[None].astype("float32"), 3, axis=0)
        trans_info = []
        if self.pad_to is not None:  # as PaddleSeg's Padding: bottom/right, recorded shape
            h, w = label.shape
            img = np.pad(img, [(0, 0), (0, self.pad_to[0] - h), (0, self.pad_to[1] - w)])
            trans_info.append(("padding", (h, w)))
        return {"img": img, "label": label[None].astype("int64"), "trans_info": trans_info}


def _labels(n=3, h=12, w=16, seed=0):
    rng = np.random.RandomState(seed)
    labels = [rng.randint(0, K, (h, w)) for _ in range(n)]
    labels[0][0, :4] = 255
    return labels


def _cm(preds, labels):
    cm = np.zeros((K, K), np.int64)
    for p, g in zip(preds, labels):
        keep = g != 255
        np.add.at(cm, (g[keep], p[keep]), 1)
    return cm


# -- evaluate --------------------------------------------------------------------------


def test_perfect_model_scores_one_and_train_mode_is_restored():
    model = PixelModel()
    model.train()
    labels = _labels()
    result = evaluate(model, ArrayDataset(labels), num_vis=2)
    assert result.miou == pytest.approx(1.0) and result.acc == pytest.approx(1.0)
    assert result.kappa == pytest.approx(1.0)
    assert result.num_samples == 3 and len(result.samples) == 2
    index, pred, label = result.samples[1]
    assert index == 1 and pred.dtype == np.uint8 and pred.shape == (12, 16)
    np.testing.assert_array_equal(label, labels[1])
    assert result.protocol == "full resolution"
    assert result.confusion.sum() == 3 * 12 * 16 - 4
    assert model.training


def test_eval_mode_is_kept_and_mode_is_restored_after_an_error():
    model = PixelModel()
    model.eval()
    evaluate(model, ArrayDataset(_labels()), print_detail=False)
    assert not model.training

    class Broken(PixelModel):
        def forward(self, x):
            raise RuntimeError("boom")

    broken = Broken()
    broken.train()
    with pytest.raises(RuntimeError, match="boom"):
        evaluate(broken, ArrayDataset(_labels()), print_detail=False)
    assert broken.training


def test_known_confusion_from_a_biased_model():
    # offset +1 shifts every prediction one class up (saturating at K-1 in the argmax).
    labels = _labels()
    result = evaluate(PixelModel(offset=1.0), ArrayDataset(labels), print_detail=False)
    expected = _cm([np.minimum(g + 1, K - 1) for g in labels], labels)
    np.testing.assert_array_equal(result.confusion, expected)
    tp = np.diag(expected)
    union = expected.sum(0) + expected.sum(1) - tp
    assert result.miou == pytest.approx(np.mean(tp[union > 0] / union[union > 0]))
    assert result.acc == pytest.approx(tp.sum() / expected.sum())
    np.testing.assert_allclose(result.class_iou, tp / union)


def test_num_classes_and_ignore_index_overrides():
    labels = [np.array([[0, 1], [7, 7]])]  # 7 is this run's ignore label
    result = evaluate(
        PixelModel(), ArrayDataset(labels), num_classes=2, ignore_index=7, print_detail=False
    )
    assert result.confusion.shape == (2, 2) and result.confusion.sum() == 2


def test_options_are_validated_before_any_data_is_read():
    dataset = ArrayDataset(_labels())
    with pytest.raises(TypeError, match="flip_horizonal"):
        evaluate(PixelModel(), dataset, flip_horizonal=True)
    with pytest.raises(ValueError, match="crop_size and stride"):
        evaluate(PixelModel(), dataset, is_slide=True)
    with pytest.raises(ValueError, match="precision"):
        evaluate(PixelModel(), dataset, precision="int8")
    assert dataset.accessed == []


def test_paddleseg_test_config_flip_only_applies_with_aug_eval():
    labels = _labels(n=1)
    plain = evaluate(PixelModel(ramp=3.0), ArrayDataset(labels), print_detail=False)
    no_aug = evaluate(
        PixelModel(ramp=3.0), ArrayDataset(labels), flip_horizontal=True, print_detail=False
    )
    np.testing.assert_array_equal(plain.confusion, no_aug.confusion)
    assert no_aug.protocol == "full resolution"
    flipped = evaluate(
        PixelModel(ramp=3.0),
        ArrayDataset(labels),
        aug_eval=True,
        flip_horizontal=True,
        print_detail=False,
    )
    assert flipped.protocol == "full resolution, flip"


def test_fp16_on_cpu_is_fp32_and_noted_once(monkeypatch):
    monkeypatch.setattr(runtime_module, "_cpu_fallback_noted", set())
    records = []
    log = logging.getLogger("test_paddle_stdc_precision")
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        labels = _labels(n=1)
        fp32 = evaluate(PixelModel(offset=0.4), ArrayDataset(labels), print_detail=False)
        for _ in range(2):
            fp16 = evaluate(
                PixelModel(offset=0.4),
                ArrayDataset(labels),
                precision="fp16",
                print_detail=False,
                logger=log,
            )
    finally:
        log.removeHandler(handler)
    np.testing.assert_array_equal(fp16.confusion, fp32.confusion)
    assert sum("needs a GPU" in r.getMessage() for r in records) == 1


def test_progress_lines_every_tenth_with_speed_and_eta():
    records = []
    log = logging.getLogger("test_paddle_stdc_progress")
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        evaluate(PixelModel(), ArrayDataset(_labels(n=20, h=4, w=4)), logger=log)
    finally:
        log.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    progress = [m for m in messages if "samples/s" in m]
    assert len(progress) == 10 and progress[-1].startswith("[EVAL] 20/20 samples (100%)")
    assert all("ETA" in m for m in progress)
    assert "full resolution" in messages[0] and "mIoU: 1.0000" in messages[-1]


def test_sharded_evaluation_sums_to_the_single_process_result(monkeypatch):
    labels = _labels(n=5, seed=7)
    model = PixelModel(offset=0.6)
    single = evaluate(model, ArrayDataset(labels), print_detail=False)

    def no_distributed(*args, **kwargs):
        raise AssertionError("single-process evaluation made a distributed call")

    monkeypatch.setattr(paddle.distributed, "all_reduce", no_distributed)
    monkeypatch.setattr(paddle.distributed, "init_parallel_env", no_distributed)
    evaluate(model, ArrayDataset(labels), print_detail=False)

    # Simulate 2 processes: rank 1 publishes its tensor, rank 0's all_reduce adds it.
    published = {}

    def run(rank):
        def fake_all_reduce(tensor, op=None, group=None, sync_op=True):
            assert op in (None, paddle.distributed.ReduceOp.SUM)
            if rank == 1:
                published["rank1"] = tensor.numpy().copy()
            else:
                tensor.set_value(tensor.numpy() + published["rank1"])

        monkeypatch.setattr(paddle.distributed, "get_world_size", lambda *a, **k: 2)
        monkeypatch.setattr(paddle.distributed, "get_rank", lambda *a, **k: rank)
        monkeypatch.setattr(paddle.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(paddle.distributed, "all_reduce", fake_all_reduce)
        dataset = ArrayDataset(labels)
        result = evaluate(model, dataset, num_vis=5, print_detail=False)
        return dataset.accessed, result

    seen1, _ = run(1)
    seen0, result = run(0)
    assert seen0 == [0, 2, 4] and seen1 == [1, 3]  # disjoint, no padding/duplicates
    assert [s[0] for s in result.samples] == [0, 2, 4]
    np.testing.assert_array_equal(result.confusion, single.confusion)
    assert result.num_samples == 5 and result.miou == single.miou


def test_padding_trans_info_through_a_dataloader_is_undone():
    labels = _labels(h=10, w=13)
    result = evaluate(PixelModel(), ArrayDataset(labels, pad_to=(16, 16)), print_detail=False)
    assert result.confusion.sum() == 3 * 10 * 13 - 4 and result.miou == pytest.approx(1.0)


def test_worker_processes_give_the_same_result():
    labels = _labels(n=2, h=10, w=13)
    dataset = ArrayDataset(labels, pad_to=(16, 16))
    base = evaluate(PixelModel(offset=0.6), dataset, num_vis=2, print_detail=False)
    workers = evaluate(
        PixelModel(offset=0.6), dataset, num_workers=1, num_vis=2, print_detail=False
    )
    np.testing.assert_array_equal(workers.confusion, base.confusion)
    assert [s[0] for s in workers.samples] == [0, 1]
    np.testing.assert_array_equal(workers.samples[1][2], labels[1])


def test_a_failing_dataset_raises_instead_of_hanging():
    class Failing(ArrayDataset):
        def __getitem__(self, idx):
            if idx == 1:
                raise FileNotFoundError("label_1.png")
            return super().__getitem__(idx)

    with pytest.raises(FileNotFoundError, match="label_1.png"):
        evaluate(PixelModel(), Failing(_labels()), print_detail=False)


def _write_paddleseg_dataset(tmp_path, labels):
    lines = []
    for i, label in enumerate(labels):
        img = np.zeros(label.shape + (3,), np.uint8)
        img[..., 2] = label * 50  # cv2 writes BGR; the dataset converts to RGB -> channel 0
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
        cv2.imwrite(str(tmp_path / f"{i}_label.png"), label.astype(np.uint8))
        lines.append(f"{i}.png {i}_label.png")
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")


def _paddleseg_dataset(tmp_path, transforms):
    return PaddleSegDataset(
        transforms=transforms,
        dataset_root=str(tmp_path),
        num_classes=K,
        mode="val",
        val_path=str(tmp_path / "val.txt"),
    )


# Normalize maps v -> (v / 255 - 0.5) / 0.5, so the class is v' * 0.5 * 255 / 50 + 0.5 * 255 / 50.
DECODE = {"scale": 0.5 * 255 / 50, "offset": 0.5 * 255 / 50}


def test_paddleseg_dataset_with_padding(tmp_path):
    rng = np.random.RandomState(3)
    _write_paddleseg_dataset(tmp_path, [rng.randint(0, K, (10, 14)) for _ in range(2)])
    dataset = _paddleseg_dataset(tmp_path, [Padding(target_size=(16, 16)), Normalize()])
    assert dataset[0]["trans_info"] == [("padding", (10, 14))]
    model = PixelModel(**DECODE)
    result = evaluate(model, dataset, print_detail=False)
    assert model.seen_shapes[-1] == [1, 3, 16, 16]
    assert result.num_samples == 2
    assert result.confusion.sum() == 2 * 10 * 14  # padding cropped off before scoring
    assert result.miou == pytest.approx(1.0)


def test_paddleseg_dataset_with_resize(tmp_path):
    labels = [np.full((10, 14), c) for c in (0, 2, 3)]  # one class per image survives resizing
    _write_paddleseg_dataset(tmp_path, labels)
    dataset = _paddleseg_dataset(tmp_path, [Resize(target_size=(20, 8)), Normalize()])
    model = PixelModel(**DECODE)
    result = evaluate(model, dataset, print_detail=False)
    assert model.seen_shapes[-1] == [1, 3, 8, 20]
    assert result.confusion.sum() == 3 * 10 * 14 and result.acc == pytest.approx(1.0)


# -- inference modes -------------------------------------------------------------------


def _rand_input(seed, shape):
    return paddle.to_tensor(np.random.RandomState(seed).rand(*shape).astype("float32") * 3)


def test_model_logits_takes_the_first_output_and_rejects_non_lists():
    x = _rand_input(0, (1, 3, 5, 6))
    np.testing.assert_array_equal(model_logits(PixelModel(), x).numpy(), PixelModel()(x)[0])

    class Bare(paddle.nn.Layer):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="Tensor"):
        model_logits(Bare(), x)


def test_nhwc_model_gets_nhwc_input():
    class Nhwc(paddle.nn.Layer):
        data_format = "NHWC"

        def forward(self, x):
            assert x.shape[-1] == 3
            return [paddle.concat([x, x[..., :1]], axis=-1)]

    x = _rand_input(1, (1, 3, 5, 6))
    out = model_logits(Nhwc(), x)
    assert list(out.shape) == [1, 4, 5, 6]
    np.testing.assert_array_equal(out.numpy()[:, :3], x.numpy())


def _naive_slide(model, x, crop, stride):
    """Reference sliding window in numpy (PaddleSeg's placement rule)."""
    x = x.numpy()
    h, w = x.shape[2:]
    (cw, ch), (sw, sh) = crop, stride
    rows = 1 if h <= ch else math.ceil((h - ch) / sh) + 1
    cols = 1 if w <= cw else math.ceil((w - cw) / sw) + 1
    acc, cnt = np.zeros((x.shape[0], K, h, w)), np.zeros((1, 1, h, w))
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * sh + ch, h), min(c * sw + cw, w)
            y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
            acc[:, :, y1:y2, x1:x2] += model(paddle.to_tensor(x[:, :, y1:y2, x1:x2]))[0].numpy()
            cnt[:, :, y1:y2, x1:x2] += 1
    return acc / cnt


def test_slide_on_a_translation_equivariant_model_equals_plain():
    x = _rand_input(2, (2, 3, 12, 17))
    model = conv_model()
    plain = model_logits(model, x).numpy()
    slide = slide_logits(model, x, crop_size=(8, 5), stride=(5, 4))
    assert slide.dtype == paddle.float32
    np.testing.assert_allclose(slide.numpy(), plain, atol=1e-5)


def test_slide_with_crop_not_smaller_than_the_image_is_one_plain_window():
    x = _rand_input(3, (1, 3, 12, 17))
    model = PixelModel(ramp=2.0)  # position-dependent: any other window would differ
    plain = model_logits(model, x).numpy()
    for crop in [(17, 12), (64, 64)]:
        model.seen_shapes.clear()
        out = infer_logits(model, x, is_slide=True, crop_size=crop, stride=(4, 4))
        assert model.seen_shapes == [[1, 3, 12, 17]]
        np.testing.assert_allclose(out.numpy(), plain, atol=1e-6)


def test_slide_window_placement_matches_a_naive_reference():
    x = _rand_input(4, (1, 3, 13, 19))
    model = PixelModel(ramp=2.0)
    for crop, stride in [((8, 6), (5, 4)), ((19, 5), (7, 3)), ((10, 13), (10, 13))]:
        got = slide_logits(model, x, crop, stride).numpy()
        np.testing.assert_allclose(got, _naive_slide(model, x, crop, stride), atol=1e-5)


def test_slide_stride_larger_than_crop_is_an_error_only_with_gaps():
    x = _rand_input(5, (1, 3, 10, 30))
    with pytest.raises(ValueError, match="gaps along the width"):
        slide_logits(PixelModel(), x, crop_size=(8, 10), stride=(12, 10))
    # Width 14: windows [0, 8) and [6, 14) (the last one aligned to the border), no gap.
    y = _rand_input(5, (1, 3, 10, 14))
    np.testing.assert_allclose(
        slide_logits(conv_model(), y, crop_size=(8, 10), stride=(12, 10)).numpy(),
        model_logits(conv_model(), y).numpy(),
        atol=1e-5,
    )


def test_flip_averaging_equals_the_manual_average():
    x = _rand_input(6, (1, 3, 6, 10))
    model = PixelModel(ramp=2.0)
    run = lambda t: model(t)[0].numpy()  # noqa: E731
    plain = run(x)
    h = run(paddle.flip(x, [3]))[..., ::-1]
    v = run(paddle.flip(x, [2]))[..., ::-1, :]
    hv = run(paddle.flip(x, [2, 3]))[..., ::-1, ::-1]
    got = aug_logits(model, x, flip_horizontal=True).numpy()
    np.testing.assert_allclose(got, (plain + h) / 2, atol=1e-6)
    assert not np.allclose(got, plain, atol=1e-3)  # the flip did matter
    got = aug_logits(model, x, flip_horizontal=True, flip_vertical=True).numpy()
    np.testing.assert_allclose(got, (plain + h + v + hv) / 4, atol=1e-6)


def test_multi_scale_averages_logits_resized_back():
    x = _rand_input(7, (1, 3, 8, 12))
    model = PixelModel(ramp=1.0)
    half = F.interpolate(x, [4, 6], mode="bilinear", align_corners=False)
    small = F.interpolate(model(half)[0], [8, 12], mode="bilinear", align_corners=False)
    expected = (model(x)[0].numpy() + small.numpy()) / 2
    got = aug_logits(model, x, scales=(1.0, 0.5))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    via_infer = infer_logits(model, x, aug_eval=True, scales=[1.0, 0.5])
    np.testing.assert_allclose(via_infer.numpy(), expected, atol=1e-6)


def test_seg50_runs_the_model_at_half_size_and_returns_label_size():
    model = PixelModel(ramp=1.0)
    x = _rand_input(8, (1, 3, 64, 128))
    logits = infer_logits(model, x, eval_scale=EVAL_PRESETS["seg50"])
    assert model.seen_shapes[-1] == [1, 3, 32, 64]
    assert list(logits.shape) == [1, K, 64, 128]
    small = F.interpolate(x, [32, 64], mode="bilinear", align_corners=True)
    expected = F.interpolate(model(small)[0], [64, 128], mode="bilinear", align_corners=True)
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), atol=1e-6)
    # trans_info is undone after the logits are back at the network-input size
    padded = infer_logits(model, x, [("padding", (60, 100))], eval_scale=0.5)
    np.testing.assert_allclose(padded.numpy(), expected.numpy()[:, :, :60, :100], atol=1e-6)


def test_seg75_through_evaluate_is_labelled():
    model = PixelModel()
    result = evaluate(model, ArrayDataset(_labels(h=32, w=48)), eval_scale=0.75)
    assert model.seen_shapes[-1] == [1, 3, 24, 36]
    assert result.protocol.startswith("Seg75") and result.confusion.sum() == 3 * 32 * 48 - 4


def test_protocol_given_twice_is_an_error():
    x = _rand_input(9, (1, 3, 4, 4))
    with pytest.raises(TypeError, match="not both"):
        infer_logits(PixelModel(), x, None, EvalProtocol(eval_scale=0.5), eval_scale=0.5)
    out = infer_logits(PixelModel(), x, None, EvalProtocol(eval_scale=0.5))
    assert list(out.shape) == [1, K, 4, 4]


def test_reverse_transform_crops_padding_and_undoes_resize():
    logit = paddle.randn([1, K, 8, 8])
    cropped = reverse_transform(logit, [("padding", (5, 6))])
    np.testing.assert_array_equal(cropped.numpy(), logit.numpy()[:, :, :5, :6])
    resized = reverse_transform(logit, [("resize", (16, 12)), ("padding", (5, 6))])
    expected = F.interpolate(logit[:, :, :5, :6], [16, 12], mode="bilinear")
    np.testing.assert_allclose(resized.numpy(), expected.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="rotate"):
        reverse_transform(logit, [("rotate", (8, 8))])


def test_reverse_transform_reads_dataloader_collated_trans_info():
    dataset = ArrayDataset(_labels(n=2, h=5, w=6), pad_to=(8, 8))
    batch = next(iter(paddle.io.DataLoader(dataset, batch_size=1, return_list=True)))
    logit = paddle.randn([1, K, 8, 8])
    out = reverse_transform(logit, batch["trans_info"])
    np.testing.assert_array_equal(out.numpy(), logit.numpy()[:, :, :5, :6])
    # A batch of two samples with different original sizes, as a DataLoader collates it.
    mixed = [[["padding", "padding"], [paddle.to_tensor([5, 4]), paddle.to_tensor([6, 6])]]]
    with pytest.raises(ValueError, match="batch size 1"):
        reverse_transform(paddle.randn([2, K, 8, 8]), mixed)


def describe_protocol(**options) -> str:
    return EvalProtocol(**options).describe()


def test_describe_protocol_names_every_option():
    assert describe_protocol() == "full resolution"
    assert describe_protocol(eval_scale=0.5) == "Seg50 (0.5x input)"
    assert describe_protocol(eval_scale=0.75).startswith("Seg75")
    assert describe_protocol(eval_scale=0.6) == "0.6x input"
    text = describe_protocol(
        eval_scale=0.5, aug_eval=True, scales=[0.75, 1.0], flip_horizontal=True
    )
    assert text == "Seg50 (0.5x input), multi-scale [0.75, 1], flip"
    text = describe_protocol(
        aug_eval=True, flip_horizontal=True, flip_vertical=True, is_slide=True,
        crop_size=(1024, 512), stride=(768, 384),
    )  # fmt: skip
    assert text == "full resolution, flip (h+v+hv), sliding window 1024x512 stride 768x384"
    assert EvalProtocol.from_dict({"eval_scale": 0.5}).describe() == "Seg50 (0.5x input)"
    with pytest.raises(KeyError, match="flip_horizonal"):
        EvalProtocol.from_dict({"flip_horizonal": True})
