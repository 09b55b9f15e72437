"""Evaluation loop and inference modes with small deterministic fake models."""

from __future__ import annotations

import cv2
import numpy as np
import paddle
import pytest
from paddleseg.datasets import Dataset as PaddleSegDataset
from paddleseg.transforms import Normalize, Padding

from paddle_stdc.engine.evaluator import evaluate
from paddle_stdc.engine.inference import EvalProtocol, aug_logits, infer_logits, reverse_transform

K = 4


class PixelModel(paddle.nn.Layer):
    """Decodes the class from channel 0 (value * scale + offset); logits = -|k - class|."""

    def __init__(self, scale: float = 1.0, offset: float = 0.0, ramp: float = 0.0) -> None:
        super().__init__()
        self.scale, self.offset, self.ramp = scale, offset, ramp
        self.seen_shapes = []

    def forward(self, x):
        self.seen_shapes.append(list(x.shape))
        value = x[:, 0:1] * self.scale + self.offset
        classes = paddle.arange(K, dtype="float32").reshape([1, K, 1, 1])
        logits = -paddle.abs(classes - value)
        if self.ramp:  # position-dependent, so flipping matters
            w = x.shape[3]
            logits = logits + self.ramp * paddle.linspace(0, 1, w).reshape([1, 1, 1, w])
        return [logits]


class ArrayDataset(paddle.io.Dataset):
    """PaddleSeg val-mode samples from arrays: img (3, H, W) carries the label in channel 0."""

    num_classes, ignore_index = K, 255

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        label = self.labels[idx]
        img = np.repeat(np.where(label == 255, 0, label)[None].astype("float32"), 3, axis=0)
        return {"img": img, "label": label[None].astype("int64"), "trans_info": []}


def _labels(n=3, h=12, w=16, seed=0):
    rng = np.random.RandomState(seed)
    labels = [rng.randint(0, K, (h, w)) for _ in range(n)]
    labels[0][0, :4] = 255
    return labels


def test_perfect_model_scores_one_and_mode_is_restored():
    model = PixelModel()
    model.train()
    result = evaluate(model, ArrayDataset(_labels()), num_vis=2)
    assert result.miou == pytest.approx(1.0) and result.acc == pytest.approx(1.0)
    assert result.num_samples == 3 and len(result.samples) == 2
    assert result.protocol == "full resolution"
    assert model.training


def test_known_confusion_from_a_biased_model():
    # offset +1 shifts every prediction one class up (clipped at K-1 by the argmax).
    result = evaluate(PixelModel(offset=1.0), ArrayDataset(_labels()))
    labels = np.concatenate([lbl.reshape(-1) for lbl in _labels()])
    valid = labels != 255
    expected_pred = np.minimum(labels[valid] + 1, K - 1)
    assert result.acc == pytest.approx(np.mean(expected_pred == labels[valid]))


def test_slide_equals_plain_for_a_pixelwise_model():
    x = paddle.to_tensor(np.random.RandomState(0).randint(0, K, (1, 3, 12, 17)).astype("float32"))
    model = PixelModel()
    plain = infer_logits(model, x)
    slide = infer_logits(
        model, x, None, EvalProtocol(is_slide=True, crop_size=(8, 5), stride=(5, 4))
    )
    np.testing.assert_allclose(slide.numpy(), plain.numpy(), atol=1e-6)
    big = infer_logits(
        model, x, None, EvalProtocol(is_slide=True, crop_size=(64, 64), stride=(32, 32))
    )
    np.testing.assert_allclose(big.numpy(), plain.numpy(), atol=1e-6)


def test_flip_averages_the_flipped_prediction():
    x = paddle.to_tensor(np.random.RandomState(1).rand(1, 3, 6, 10).astype("float32") * 3)
    model = PixelModel(ramp=2.0)
    plain = model(x)[0].numpy()
    flipped = model(paddle.flip(x, [3]))[0].numpy()[..., ::-1]
    got = aug_logits(model, x, EvalProtocol(aug_eval=True, flip_horizontal=True)).numpy()
    np.testing.assert_allclose(got, (plain + flipped) / 2, atol=1e-6)


def test_seg50_runs_the_model_at_half_size_and_returns_label_size():
    model = PixelModel()
    x = paddle.zeros([1, 3, 64, 128])
    logits = infer_logits(model, x, None, EvalProtocol(eval_scale=0.5))
    assert model.seen_shapes[-1] == [1, 3, 32, 64]
    assert list(logits.shape) == [1, K, 64, 128]
    result = evaluate(PixelModel(), ArrayDataset(_labels(h=32, w=32)), eval_scale=0.75)
    assert result.protocol.startswith("Seg75")


def test_unknown_protocol_option_is_named():
    with pytest.raises(KeyError, match="flip_horizonal"):
        evaluate(PixelModel(), ArrayDataset(_labels()), flip_horizonal=True)


def test_reverse_transform_crops_padding_and_undoes_resize():
    logit = paddle.randn([1, K, 8, 8])
    cropped = reverse_transform(logit, [("padding", (5, 6))])
    np.testing.assert_array_equal(cropped.numpy(), logit.numpy()[:, :, :5, :6])
    resized = reverse_transform(logit, [("resize", (16, 12)), ("padding", (5, 6))])
    assert list(resized.shape) == [1, K, 16, 12]


def test_paddleseg_dataset_with_padding(tmp_path):
    rng = np.random.RandomState(3)
    lines = []
    for i in range(2):
        label = rng.randint(0, K, (10, 14)).astype(np.uint8)
        img = np.zeros((10, 14, 3), np.uint8)
        img[..., 2] = label * 50  # cv2 writes BGR; the dataset converts to RGB -> channel 0
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
        cv2.imwrite(str(tmp_path / f"{i}_label.png"), label)
        lines.append(f"{i}.png {i}_label.png")
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    dataset = PaddleSegDataset(
        transforms=[Padding(target_size=(16, 16)), Normalize()],
        dataset_root=str(tmp_path),
        num_classes=K,
        mode="val",
        val_path=str(tmp_path / "val.txt"),
    )
    # Normalize maps v -> (v / 255 - 0.5) / 0.5; decode label = v * 255 / 50.
    model = PixelModel(scale=0.5 * 255 / 50, offset=0.5 * 255 / 50)
    result = evaluate(model, dataset)
    assert result.num_samples == 2
    assert result.confusion.sum() == 2 * 10 * 14  # padding cropped off before scoring
    assert result.miou == pytest.approx(1.0)
