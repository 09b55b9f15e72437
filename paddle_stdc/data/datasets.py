"""Datasets that check their files: PaddleSeg's ``Dataset``, ``Cityscapes`` and ``PascalVOC``.

Registered over PaddleSeg's names, so existing YAML configs get them. What changes against
PaddleSeg 2.8, and why:

* Cityscapes pairs images and labels by their ``<city>_<seq>_<frame>`` stem; PaddleSeg zips
  two sorted lists, so one missing label silently shifts every later pair.
* A missing ``dataset_root`` is an error; PaddleSeg's ``PascalVOC`` starts a download.
* Every sample is read with checks: missing or undecodable image/label, label values outside
  ``[0, num_classes) ∪ {ignore_index}``, image/label size mismatch -> :class:`DataError`
  naming the file. ``on_error: skip`` instead skips the sample (reading the next one), logs it
  and counts it in :attr:`CheckedDatasetMixin.skipped`.
* Labels are checked again after the transforms (a bincount of the crop), so a value a
  transform added (e.g. padding with 255 when ``ignore_index`` is 11) is a :class:`DataError`
  naming the file, never Paddle's loss-kernel ``OutOfRange``; and a transform that pads labels
  (``label_padding_value``) with neither a class nor ``ignore_index`` is an error when the
  dataset is built.

Samples are handed to PaddleSeg's ``Compose`` as it would read them itself (BGR float32 image,
label as ``np.asarray(Image.open(path))``), so the transforms behave exactly as in PaddleSeg --
except that when every transform takes uint8 (:mod:`paddle_stdc.data.transforms`), the image
stays uint8, which saves the float32 copy and its conversions (see "Input pipeline speed" in
docs/data.md). :func:`load_model_input` is the same reading for ``tools/predict.py``, so
prediction, evaluation and deploy's predictor (uint8 resize, then ``Normalize``) see one tensor
per image.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import paddleseg.datasets as psd
import paddleseg.transforms.functional as F
from PIL import Image

from paddle_stdc.data.transforms import takes_uint8
from paddle_stdc.registry import register_dataset

logger = logging.getLogger("paddle_stdc")

ON_ERROR = ("raise", "skip")


class DataError(ValueError):
    """A sample's file is missing, unreadable or inconsistent; the message names the file."""


# ----------------------------------------------------------------------------- reading


def read_image(path: str, channels: int = 3) -> np.ndarray:
    """The image at ``path`` as uint8 (H, W, 3) BGR (or (H, W) for ``channels=1``)."""
    if not os.path.isfile(path):
        raise DataError(f"image file {path} does not exist")
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    image = cv2.imread(path, flag)
    if image is None or image.size == 0:
        raise DataError(f"image file {path} cannot be decoded (corrupt, empty or not an image)")
    return image


def new_sample(image: np.ndarray, transforms: Any) -> Dict[str, Any]:
    """The sample a PaddleSeg ``Compose`` gets for a uint8 image read by :func:`read_image`.

    The image stays uint8 when every transform takes uint8 (:func:`takes_uint8`: resizing and
    padding then work on uint8 and ``Normalize`` is the one float conversion, as in deploy's
    predictor); otherwise it becomes float32, as PaddleSeg's reader makes it.
    """
    if not takes_uint8(transforms):
        image = image.astype("float32")
    return {"img": image, "trans_info": [], "gt_fields": []}


def load_model_input(path: str | Path, transforms: Any, channels: int = 3) -> Dict[str, Any]:
    """Image file -> the transformed sample (``img`` (C, H, W) float32, ``trans_info``).

    What the val datasets (``tools/val.py``) do with a sample's image, for ``tools/predict.py``:
    one reading (:func:`read_image`: OpenCV, BGR, EXIF orientation applied) and one
    :func:`new_sample`, so prediction and evaluation feed the network the same tensor.
    """
    return transforms(new_sample(read_image(str(path), channels), transforms))


def read_label(path: str) -> np.ndarray:
    """Class ids (H, W) from a single-channel or palette PNG, as PaddleSeg reads labels."""
    if not os.path.isfile(path):
        raise DataError(f"label file {path} does not exist")
    try:
        with Image.open(path) as img:
            label = np.asarray(img)
    except Exception as err:  # noqa: BLE001  (PIL raises many types for broken files)
        raise DataError(f"label file {path} cannot be decoded: {err}") from err
    if label.ndim != 2:
        raise DataError(
            f"label file {path} has shape {label.shape}; labels must be single-channel class "
            "ids (grey or palette PNG), not colour images: convert colours to ids first"
        )
    return label


def bad_label_values(label: np.ndarray, num_classes: int, ignore_index: int) -> List[int]:
    """Label values outside ``[0, num_classes) ∪ {ignore_index}`` (sorted)."""
    if label.dtype == np.uint8:
        present = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    elif label.size and label.min() >= 0 and label.max() < num_classes:
        return []  # the common case, without sorting every value
    else:
        present = np.unique(label)
    return [int(v) for v in present if not (0 <= v < num_classes or v == ignore_index)]


def check_pair(
    image: np.ndarray, label: np.ndarray, label_path: str, num_classes: int, ignore_index: int
) -> None:
    """Raise :class:`DataError` for a size mismatch or out-of-range label values."""
    if image.shape[:2] != label.shape[:2]:
        raise DataError(
            f"label file {label_path} is {label.shape[1]}x{label.shape[0]} (WxH) but its image "
            f"is {image.shape[1]}x{image.shape[0]}"
        )
    bad = bad_label_values(label, num_classes, ignore_index)
    if bad:
        shown = shown_values(bad)
        raise DataError(
            f"label file {label_path} has values {shown} outside [0, {num_classes}) and "
            f"ignore_index {ignore_index}: fix num_classes, map those values to "
            f"{ignore_index}, or set on_error: skip"
        )


def _values(value: Any) -> List[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_label_fill(transforms: Any, num_classes: int, ignore_index: int, where: str) -> None:
    """Raise :class:`DataError` if a transform (``label_padding_value``) fills labels with a
    value that is neither a class id nor ``ignore_index``."""
    for i, t in enumerate(getattr(transforms, "transforms", None) or []):
        fill = getattr(t, "label_padding_value", None)
        allowed = set(range(num_classes)) | {ignore_index}
        if any(v is not None and v not in allowed for v in _values(fill)):
            raise DataError(
                f"{where}: transforms[{i}] {type(t).__name__} pads labels with {fill}, neither "
                f"a class id (0..{num_classes - 1}) nor ignore_index {ignore_index}: set its "
                f"label_padding_value to {ignore_index} (or leave it out of the config)"
            )


def shown_values(values: Sequence[int], most: int = 8) -> str:
    """``values`` for an error message: the first ``most``, then "..." if there are more."""
    return ", ".join(map(str, values[:most])) + (" ..." if len(values) > most else "")


def check_transformed_label(
    label: np.ndarray, label_path: str, num_classes: int, ignore_index: int
) -> None:
    """Raise :class:`DataError` if the transforms put values outside ``[0, num_classes) ∪
    {ignore_index}`` into a label (the file itself was checked when read)."""
    bad = bad_label_values(label, num_classes, ignore_index)
    if bad:
        shown = shown_values(bad)
        raise DataError(
            f"label file {label_path}: after the transforms its label has values {shown}, "
            f"outside [0, {num_classes}) and ignore_index {ignore_index} (the file has none: "
            "a transform added them; check label_padding_value and similar keys)"
        )


def read_checked(
    image_path: str, label_path: Optional[str], channels: int, num_classes: int, ignore_index: int
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(image, label or None) of one sample, with every check of :func:`check_pair`."""
    image = read_image(image_path, channels)
    if label_path is None:
        return image, None
    label = read_label(label_path)
    check_pair(image, label, label_path, num_classes, ignore_index)
    return image, label


# ----------------------------------------------------------------------------- pairing


def _stem(path: str, suffix: str) -> str:
    name = os.path.basename(path)
    return name[: -len(suffix)] if suffix and name.endswith(suffix) else os.path.splitext(name)[0]


def pair_by_stem(
    images: Iterable[str],
    labels: Iterable[str],
    image_suffix: str,
    label_suffix: str,
    on_error: str = "raise",
    problems: Optional[List[str]] = None,
) -> List[List[str]]:
    """``[image, label]`` pairs matched by the file name without its suffix (sorted).

    An image without a label (or a label without an image) is an error naming the files,
    or with ``on_error='skip'`` a logged warning (appended to ``problems`` if given), and the
    unmatched files are left out.
    """
    by_stem_img = {_stem(p, image_suffix): p for p in images}
    by_stem_lbl = {_stem(p, label_suffix): p for p in labels}
    no_label = sorted(set(by_stem_img) - set(by_stem_lbl))
    no_image = sorted(set(by_stem_lbl) - set(by_stem_img))
    found = [f"image {by_stem_img[s]} has no label *{s}{label_suffix}" for s in no_label]
    found += [f"label {by_stem_lbl[s]} has no image *{s}{image_suffix}" for s in no_image]
    if found:
        text = "; ".join(found[:5]) + (f" (and {len(found) - 5} more)" if len(found) > 5 else "")
        if on_error == "raise":
            raise DataError(f"{len(found)} unpaired files: {text}")
        logger.warning("skipping %d unpaired files: %s", len(found), text)
        if problems is not None:
            problems.extend(found)
    return [[by_stem_img[s], by_stem_lbl[s]] for s in sorted(set(by_stem_img) & set(by_stem_lbl))]


def _missing_files(file_list: Sequence[Sequence[Optional[str]]]) -> List[str]:
    return [p for pair in file_list for p in pair if p is not None and not os.path.isfile(p)]


def _require_root(root: Optional[str], cls: str, hint: str) -> str:
    if not root or not os.path.isdir(root):
        raise FileNotFoundError(
            f"{cls}: dataset_root {root!r} does not exist. paddle_stdc never downloads "
            f"datasets; {hint}"
        )
    return root


# ----------------------------------------------------------------------------- datasets


class CheckedDatasetMixin:
    """Checked reading for PaddleSeg datasets (``file_list``, ``transforms``, ``mode``)."""

    file_list: List[List[Optional[str]]]
    on_error: str = "raise"
    #: Every label is checked after the transforms (so batches need no check of their own).
    checks_labels: bool = True

    def _init_checks(self, on_error: str) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        self.skipped: List[Tuple[str, str]] = []
        #: Files left out at construction in skip mode (unpaired or missing), as messages.
        self.init_problems: List[str] = getattr(self, "init_problems", [])
        missing = _missing_files(self.file_list)
        if missing:
            text = ", ".join(missing[:5]) + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")  # fmt: skip
            if on_error == "raise":
                raise DataError(f"{type(self).__name__} ({self.mode}): missing files: {text}")
            logger.warning("%s: skipping samples with missing files: %s", type(self).__name__, text)
            self.init_problems.extend(f"file {p} does not exist" for p in missing)
            gone = set(missing)
            self.file_list = [p for p in self.file_list if not (set(p) & gone)]
        check_label_fill(
            getattr(self, "transforms", None), self.num_classes, self.ignore_index,
            f"{type(self).__name__} ({self.mode})",
        )  # fmt: skip
        if not self.file_list:
            raise DataError(
                f"{type(self).__name__} ({self.mode}) under {getattr(self, 'dataset_root', '?')} "
                "has no samples: check dataset_root, mode and the file layout"
            )

    def read_sample(self, index: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The checked (image uint8 BGR, label or None) of sample ``index``."""
        image_path, label_path = self.file_list[index]
        channels = getattr(self, "img_channels", 3)
        return read_checked(image_path, label_path, channels, self.num_classes, self.ignore_index)

    def _load(self, index: int) -> Dict[str, Any]:
        label_path = self.file_list[index][1]
        image, label = self.read_sample(index)
        # uint8 when every transform takes it (no float32 copy), as load_model_input does.
        data = new_sample(image, self.transforms)
        if label is None:
            return self.transforms(data)
        data["label"] = label
        if self.mode == "val":
            data = self.transforms(data)
            check_transformed_label(data["label"], label_path, self.num_classes, self.ignore_index)
            data["label"] = data["label"][np.newaxis, :, :]
            return data
        data["gt_fields"].append("label")
        data = self.transforms(data)
        check_transformed_label(data["label"], label_path, self.num_classes, self.ignore_index)
        if getattr(self, "edge", False):
            data["edge"] = F.mask_to_binary_edge(
                data["label"], radius=2, num_classes=self.num_classes
            )
        return data

    def __getitem__(self, index: int) -> Dict[str, Any]:
        for attempt in range(len(self.file_list)):
            try:
                return self._load((index + attempt) % len(self.file_list))
            except DataError as err:
                if self.on_error == "raise":
                    raise
                self.skipped.append((str(index + attempt), str(err)))
                logger.warning("skipped a sample (%d so far here): %s", len(self.skipped), err)
        raise DataError(f"{type(self).__name__}: every sample failed to load")


@register_dataset
class Dataset(CheckedDatasetMixin, psd.Dataset):
    """PaddleSeg's file-list dataset (``image label`` per line), with checked reading."""

    def __init__(
        self,
        mode: str,
        dataset_root: str,
        transforms: list,
        num_classes: int,
        img_channels: int = 3,
        train_path: Optional[str] = None,
        val_path: Optional[str] = None,
        test_path: Optional[str] = None,
        separator: str = " ",
        ignore_index: int = 255,
        edge: bool = False,
        on_error: str = "raise",
    ) -> None:
        _require_root(dataset_root, "Dataset", "check dataset_root in the config")
        super().__init__(
            mode, dataset_root, transforms, num_classes, img_channels, train_path, val_path,
            test_path, separator, ignore_index, edge,
        )  # fmt: skip
        self._init_checks(on_error)


@register_dataset
class Cityscapes(CheckedDatasetMixin, psd.Cityscapes):
    """Cityscapes (``leftImg8bit/``, ``gtFine/*_labelTrainIds.png``) paired by file stem."""

    IMAGE_SUFFIX = "_leftImg8bit.png"
    LABEL_SUFFIX = "_gtFine_labelTrainIds.png"

    def __init__(
        self,
        transforms: list,
        dataset_root: str,
        mode: str = "train",
        edge: bool = False,
        on_error: str = "raise",
    ) -> None:
        from paddleseg.transforms import Compose

        mode = mode.lower()
        if mode not in ("train", "val", "test"):
            raise ValueError(f"Cityscapes mode must be train, val or test, got {mode!r}")
        root = _require_root(dataset_root, "Cityscapes", "prepare it as docs/data.md says")
        for sub in ("leftImg8bit", "gtFine"):
            if not os.path.isdir(os.path.join(root, sub, mode)):
                raise FileNotFoundError(f"Cityscapes: {os.path.join(root, sub, mode)} is missing")
        self.dataset_root, self.mode, self.edge = root, mode, edge
        self.transforms = Compose(transforms)
        self.num_classes, self.ignore_index = self.NUM_CLASSES, self.IGNORE_INDEX
        images = glob.glob(os.path.join(root, "leftImg8bit", mode, "*", "*" + self.IMAGE_SUFFIX))
        labels = glob.glob(os.path.join(root, "gtFine", mode, "*", "*" + self.LABEL_SUFFIX))
        self.init_problems: List[str] = []
        self.file_list = pair_by_stem(
            images, labels, self.IMAGE_SUFFIX, self.LABEL_SUFFIX, on_error, self.init_problems
        )
        self._init_checks(on_error)


@register_dataset
class PascalVOC(CheckedDatasetMixin, psd.PascalVOC):
    """PASCAL VOC 2012 (+ SBD ``trainaug``); a missing root is an error, never a download."""

    def __init__(
        self,
        transforms: list,
        dataset_root: Optional[str] = None,
        mode: str = "train",
        edge: bool = False,
        on_error: str = "raise",
    ) -> None:
        _require_root(
            dataset_root,
            "PascalVOC",
            "download VOCtrainval_11-May-2012.tar (and SBD for trainaug), extract it so that "
            "dataset_root/VOC2012/JPEGImages exists, then point dataset_root there",
        )
        if not Path(dataset_root, "VOC2012").is_dir():
            raise FileNotFoundError(f"PascalVOC: {Path(dataset_root, 'VOC2012')} is missing")
        super().__init__(transforms, dataset_root=dataset_root, mode=mode, edge=edge)
        self._init_checks(on_error)
