"""Our Cityscapes mIoU equals the official cityscapesscripts pixel-level evaluation.

Random ground truth in labelIds (ignored ids included) and random train-id predictions on a
few small images: ``paddle_stdc.engine.metrics`` scores the train ids (labels mapped with
cityscapesscripts' table, ignored -> 255); ``evalPixelLevelSemanticLabeling.evaluateImgLists``
scores the same predictions converted to labelIds, read from PNGs on disk.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from PIL import Image

from paddle_stdc.data.prepare import cityscapes_labelid_lut, cityscapes_trainid_lut
from paddle_stdc.engine.metrics import SegMetrics, confusion_matrix

pytest.importorskip("cityscapesscripts")
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official  # noqa: E402
from cityscapesscripts.helpers.labels import labels as cs_labels  # noqa: E402

TRAIN_NAMES = sorted((lb.trainId, lb.name) for lb in cs_labels if 0 <= lb.trainId < 255)
ALL_IDS = np.array([lb.id for lb in cs_labels if lb.id >= 0], dtype=np.uint8)


def _official_args(tmp_path):
    args = copy.copy(official.args)  # the module's global CArgs, not mutated
    args.evalInstLevelScore = False  # needs *_instanceIds.png; nIoU is not compared
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    args.colorized = False
    args.bold = args.nocol = ""
    args.exportFile = str(tmp_path / "result.json")
    return args


def _case(tmp_path, seed, num_images=3, size=(48, 64), train_ids=None, gt_ids=None):
    rng = np.random.RandomState(seed)
    to_label_id, to_train_id = cityscapes_labelid_lut(), cityscapes_trainid_lut()
    train_ids = np.arange(19) if train_ids is None else np.asarray(train_ids)
    gt_ids = ALL_IDS if gt_ids is None else np.asarray(gt_ids, dtype=np.uint8)
    pred_files, gt_files, cm = [], [], np.zeros((19, 19), np.int64)
    for i in range(num_images):
        gt_label_ids = gt_ids[rng.randint(len(gt_ids), size=size)]
        # Predictions agree with the ground truth on ~half the pixels, so IoUs are not tiny.
        pred = train_ids[rng.randint(len(train_ids), size=size)].astype(np.uint8)
        gt_train = to_train_id[gt_label_ids]
        agree = (rng.rand(*size) < 0.5) & (gt_train != 255)
        pred[agree] = gt_train[agree]
        gt_path = tmp_path / f"img{i}_gtFine_labelIds.png"
        pred_path = tmp_path / f"img{i}_pred_labelIds.png"
        Image.fromarray(gt_label_ids).save(gt_path)
        Image.fromarray(to_label_id[pred]).save(pred_path)
        gt_files.append(str(gt_path))
        pred_files.append(str(pred_path))
        cm += confusion_matrix(pred, gt_train, num_classes=19, ignore_index=255)
    ours = SegMetrics.from_confusion(cm)
    theirs = official.evaluateImgLists(pred_files, gt_files, _official_args(tmp_path))
    return ours, theirs


def _compare(ours, theirs):
    assert math.isclose(ours.miou, theirs["averageScoreClasses"], rel_tol=0, abs_tol=1e-9)
    for train_id, name in TRAIN_NAMES:
        got, want = ours.class_iou[train_id], theirs["classScores"][name]
        if math.isnan(want):
            assert np.isnan(got), name
        else:
            assert math.isclose(got, want, rel_tol=0, abs_tol=1e-9), name


@pytest.mark.parametrize("seed", [0, 1])
def test_miou_equals_official_evaluator(tmp_path, seed):
    ours, theirs = _case(tmp_path, seed)
    assert 0.2 < ours.miou < 0.9
    _compare(ours, theirs)


def test_absent_classes_are_left_out_of_the_mean_in_both(tmp_path):
    # Only a few classes occur; ignored label ids (0 unlabeled, 1 ego vehicle, 4 static ...)
    # are in the ground truth, and some predicted classes never occur in it.
    ours, theirs = _case(
        tmp_path, seed=3, train_ids=[0, 1, 2, 13, 18], gt_ids=[0, 1, 4, 7, 8, 11, 26]
    )
    assert np.isnan(ours.class_iou).sum() >= 10
    assert ours.miou != ours.miou_paddleseg  # PaddleSeg's own mean counts absent classes as 0
    _compare(ours, theirs)


def test_label_tables_round_trip():
    to_label_id, to_train_id = cityscapes_labelid_lut(), cityscapes_trainid_lut()
    np.testing.assert_array_equal(to_train_id[to_label_id[np.arange(19)]], np.arange(19))
    assert sorted({int(v) for v in to_train_id[ALL_IDS]}) == [*range(19), 255]


def test_cityscapes_palette_and_names_are_the_official_ones():
    from paddle_stdc.data.palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

    for train_id, name in TRAIN_NAMES:
        label = next(lb for lb in cs_labels if lb.trainId == train_id)
        assert CITYSCAPES_CLASSES[train_id] == name
        assert tuple(CITYSCAPES_PALETTE[train_id].tolist()) == tuple(label.color), name
