"""Dataset preparation: Cityscapes train-id labels and the Pascal VOC 2012 + SBD trainaug set.

``tools/prepare_cityscapes.py`` and ``tools/prepare_voc_aug.py`` are thin wrappers around
:func:`prepare_cityscapes` and :func:`prepare_voc_aug`. Both run in parallel over processes,
are idempotent (an output newer than its source is kept; ``overwrite`` redoes it), write each
file atomically (a temporary name, then a rename) and return a :class:`PrepareReport` saying
what was written, what was already up to date and what failed.

Cityscapes: every ``gtFine/<split>/<city>/*_gtFine_polygons.json`` becomes
``*_gtFine_labelTrainIds.png`` next to it, drawn by the official ``cityscapesscripts`` package
(its ``labels`` table and ``createLabelImage``), as its ``createTrainIdLabelImgs.py`` does.

VOC-Aug: SBD's ``dataset/cls/*.mat`` (``GTcls.Segmentation``) and VOC's ``SegmentationClass``
palette PNGs become grey-level class-id PNGs in ``VOC2012/SegmentationClassAug``; the standard
trainaug split is (SBD train ∪ SBD val ∪ VOC train) − VOC val: 10,582 images for the released
lists (VOC train 1,464, val 1,449; SBD train 8,498, val 2,857). Written lists, in
``VOC2012/ImageSets/Segmentation``: ``trainaug.txt`` (all 10,582) and ``aug.txt`` (trainaug −
VOC train, 9,118), which PaddleSeg's ``PascalVOC(mode='trainaug')`` reads after ``train.txt``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

#: Sizes of the released split lists and of the standard trainaug set.
VOC_TRAIN, VOC_VAL, SBD_TRAIN, SBD_VAL = 1464, 1449, 8498, 2857
TRAINAUG_SIZE = 10582

CITYSCAPES_JSON_SUFFIX = "_gtFine_polygons.json"
CITYSCAPES_TRAINID_SUFFIX = "_gtFine_labelTrainIds.png"


@dataclass
class PrepareReport:
    """What a preparation run did: written and up-to-date outputs, failures and notes."""

    written: List[Path] = field(default_factory=list)
    skipped: List[Path] = field(default_factory=list)
    failed: List[Tuple[Path, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [
            f"wrote {len(self.written)} file(s), {len(self.skipped)} already up to date, "
            f"{len(self.failed)} failed"
        ]
        lines += [f"  FAILED {path}: {err}" for path, err in self.failed[:20]]
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more failures")
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def _up_to_date(out: Path, src: Path) -> bool:
    return out.is_file() and out.stat().st_mtime >= src.stat().st_mtime


def _save_png_atomic(image: Image.Image, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_text_atomic(path: Path, text: str) -> bool:
    """Write ``text`` unless the file already holds it; True if written."""
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def _run_jobs(
    fn: Callable[[Tuple[Path, Path]], Optional[str]],
    jobs: Sequence[Tuple[Path, Path]],
    workers: Optional[int],
    report: PrepareReport,
) -> None:
    """Run ``fn((src, out))`` over jobs (in a process pool if workers > 1); None means success."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    if workers == 1:
        results: Iterable = map(fn, jobs)
    else:
        pool = Pool(workers)
        results = pool.imap(fn, jobs, chunksize=max(1, min(64, len(jobs) // (4 * workers))))
    try:
        for (_, out), err in zip(jobs, results):
            if err is None:
                report.written.append(out)
            else:
                report.failed.append((out, err))
    finally:
        if workers > 1:
            pool.close()
            pool.join()


# --- Cityscapes ------------------------------------------------------------------------------


def _import_cityscapesscripts():
    try:
        from cityscapesscripts.helpers.annotation import Annotation
        from cityscapesscripts.helpers.labels import labels, name2label
        from cityscapesscripts.preparation.json2labelImg import createLabelImage
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Cityscapes preparation needs the official cityscapesscripts package: "
            "pip install cityscapesscripts==2.3.0"
        ) from err
    return Annotation, createLabelImage, labels, name2label


def _cityscapes_job(job: Tuple[Path, Path]) -> Optional[str]:
    src, out = job
    Annotation, createLabelImage, _, name2label = _import_cityscapesscripts()
    try:
        annotation = Annotation()
        annotation.fromJsonFile(str(src))
        for obj in annotation.objects:
            name = obj.label
            if name not in name2label and name.endswith("group"):
                name = name[: -len("group")]
            if not obj.deleted and name not in name2label:
                # createLabelImage would sys.exit() on this; report it instead.
                return f"unknown Cityscapes label {obj.label!r}"
        image = createLabelImage(annotation, "trainIds")
        _save_png_atomic(image, out)
    except Exception as err:  # noqa: BLE001  (one bad file is reported, the rest go on)
        return f"{type(err).__name__}: {err}"
    return None


def cityscapes_polygon_files(
    root: str | Path, splits: Optional[Sequence[str]] = None
) -> List[Path]:
    """Sorted ``gtFine/<split>/<city>/*_gtFine_polygons.json`` under a Cityscapes root."""
    gt = Path(root) / "gtFine"
    if not gt.is_dir():
        raise FileNotFoundError(f"{gt} does not exist: is {root} a Cityscapes root?")
    split_dirs = [gt / s for s in splits] if splits else sorted(p for p in gt.iterdir())
    files: List[Path] = []
    for split in split_dirs:
        files += sorted(split.glob(f"*/*{CITYSCAPES_JSON_SUFFIX}"))
    return files


def cityscapes_trainid_path(json_path: Path) -> Path:
    name = json_path.name[: -len(CITYSCAPES_JSON_SUFFIX)] + CITYSCAPES_TRAINID_SUFFIX
    return json_path.with_name(name)


def prepare_cityscapes(
    root: str | Path,
    workers: Optional[int] = None,
    overwrite: bool = False,
    splits: Optional[Sequence[str]] = None,
) -> PrepareReport:
    """Write ``*_gtFine_labelTrainIds.png`` for every gtFine polygon JSON under ``root``."""
    _import_cityscapesscripts()  # fail early, in this process, if it is missing
    report = PrepareReport()
    files = cityscapes_polygon_files(root, splits)
    if not files:
        raise FileNotFoundError(f"no *{CITYSCAPES_JSON_SUFFIX} under {Path(root) / 'gtFine'}")
    jobs = []
    for src in files:
        out = cityscapes_trainid_path(src)
        if not overwrite and _up_to_date(out, src):
            report.skipped.append(out)
        else:
            jobs.append((src, out))
    _run_jobs(_cityscapes_job, jobs, workers, report)
    per_split: dict = {}
    for out in report.written:
        per_split[out.parts[-3]] = per_split.get(out.parts[-3], 0) + 1
    written = ", ".join(f"{k} {v}" for k, v in sorted(per_split.items())) or "none"
    report.notes.append(
        f"{len(files)} polygon files under {Path(root) / 'gtFine'}; written per split: {written}"
    )
    return report


def cityscapes_trainid_lut() -> np.ndarray:
    """(256,) uint8 labelId -> trainId table from cityscapesscripts (255 for ignored ids)."""
    _, _, labels, _ = _import_cityscapesscripts()
    lut = np.full(256, 255, dtype=np.uint8)
    for label in labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < 255:
            lut[label.id] = label.trainId
    return lut


def cityscapes_labelid_lut() -> np.ndarray:
    """(256,) uint8 trainId -> labelId table from cityscapesscripts (255 -> 0, 'unlabeled')."""
    _, _, labels, name2label = _import_cityscapesscripts()
    lut = np.full(256, name2label["unlabeled"].id, dtype=np.uint8)
    for label in labels:
        if 0 <= label.trainId < 255 and label.id >= 0:
            lut[label.trainId] = label.id
    return lut


# --- Pascal VOC 2012 + SBD -------------------------------------------------------------------


def read_name_list(path: str | Path) -> List[str]:
    """Image names (one per line, blank lines skipped) of a split file."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def trainaug_names(
    voc_train: Iterable[str],
    voc_val: Iterable[str],
    sbd_train: Iterable[str],
    sbd_val: Iterable[str],
) -> List[str]:
    """The trainaug split, sorted: (SBD train ∪ SBD val ∪ VOC train) − VOC val."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


def expected_trainaug_size(n_voc_train: int, n_voc_val: int, n_sbd_train: int, n_sbd_val: int):
    """10,582 for the released list sizes, None (no reference count) for any other data."""
    if (n_voc_train, n_voc_val, n_sbd_train, n_sbd_val) == (VOC_TRAIN, VOC_VAL, SBD_TRAIN, SBD_VAL):
        return TRAINAUG_SIZE
    return None


def check_trainaug_counts(
    voc_train: Sequence[str],
    voc_val: Sequence[str],
    sbd_train: Sequence[str],
    sbd_val: Sequence[str],
) -> Tuple[List[str], str]:
    """The trainaug names and a message; ValueError if released-size lists give another count."""
    names = trainaug_names(voc_train, voc_val, sbd_train, sbd_val)
    sizes = (len(voc_train), len(voc_val), len(sbd_train), len(sbd_val))
    expected = expected_trainaug_size(*sizes)
    text = (
        f"VOC train {sizes[0]}, VOC val {sizes[1]}, SBD train {sizes[2]}, SBD val {sizes[3]} "
        f"-> trainaug {len(names)}"
    )
    if expected is None:
        return names, text + " (not the released list sizes: count not checked against 10,582)"
    if len(names) != expected:
        raise ValueError(f"{text}, but the standard trainaug set has {expected} images")
    return names, text + f" (= the standard {expected})"


def _voc_png_job(job: Tuple[Path, Path]) -> Optional[str]:
    src, out = job
    try:
        with Image.open(src) as im:
            if im.mode not in ("P", "L"):
                return f"expected a palette (P) or grey (L) PNG of class ids, got mode {im.mode}"
            ids = np.asarray(im)
        _save_png_atomic(Image.fromarray(ids.astype(np.uint8), mode="L"), out)
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {err}"
    return None


def load_sbd_segmentation(mat_path: str | Path) -> np.ndarray:
    """SBD ``cls/<name>.mat`` -> (H, W) uint8 class ids (``GTcls.Segmentation``)."""
    from scipy.io import loadmat

    mat = loadmat(str(mat_path), squeeze_me=True, struct_as_record=False)
    if "GTcls" not in mat:
        raise ValueError(f"{mat_path} has no GTcls struct (is it an SBD cls/*.mat file?)")
    seg = np.asarray(mat["GTcls"].Segmentation)
    if seg.ndim != 2:
        raise ValueError(f"{mat_path}: GTcls.Segmentation has shape {seg.shape}, expected (H, W)")
    if seg.size and (seg.min() < 0 or (seg.max() > 20 and seg.max() != 255)):
        raise ValueError(f"{mat_path}: class ids {np.unique(seg)[:10]} outside 0..20")
    return seg.astype(np.uint8)


def _sbd_job(job: Tuple[Path, Path]) -> Optional[str]:
    src, out = job
    try:
        _save_png_atomic(Image.fromarray(load_sbd_segmentation(src), mode="L"), out)
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {err}"
    return None


def prepare_voc_aug(
    voc_root: str | Path,
    sbd_root: str | Path,
    workers: Optional[int] = None,
    overwrite: bool = False,
) -> PrepareReport:
    """SegmentationClassAug PNGs plus trainaug.txt / aug.txt for VOC 2012 + SBD.

    ``voc_root`` is the VOCdevkit folder (with ``VOC2012/``) or ``VOC2012`` itself; ``sbd_root``
    is SBD's ``benchmark_RELEASE`` folder or its ``dataset`` folder (``cls/``, ``train.txt``,
    ``val.txt``). Where VOC has its own annotation (``SegmentationClass``) it is used; the other
    images take SBD's. Every trainaug image must be in ``VOC2012/JPEGImages``.
    """
    voc = Path(voc_root)
    voc = voc / "VOC2012" if (voc / "VOC2012").is_dir() else voc
    sbd = Path(sbd_root)
    sbd = sbd / "dataset" if (sbd / "dataset").is_dir() else sbd
    sets = voc / "ImageSets" / "Segmentation"
    for required in (sets / "train.txt", sets / "val.txt", sbd / "train.txt", sbd / "val.txt"):
        if not required.is_file():
            raise FileNotFoundError(f"{required} is missing")
    voc_train, voc_val = read_name_list(sets / "train.txt"), read_name_list(sets / "val.txt")
    sbd_train, sbd_val = read_name_list(sbd / "train.txt"), read_name_list(sbd / "val.txt")
    names, count_msg = check_trainaug_counts(voc_train, voc_val, sbd_train, sbd_val)

    missing = [n for n in names if not (voc / "JPEGImages" / f"{n}.jpg").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} trainaug image(s) are not in {voc / 'JPEGImages'}: {missing[:5]}"
        )

    out_dir = voc / "SegmentationClassAug"
    report = PrepareReport()
    voc_jobs, sbd_jobs = [], []
    for name in sorted(set(names) | set(voc_train) | set(voc_val)):
        out = out_dir / f"{name}.png"
        voc_png, mat = voc / "SegmentationClass" / f"{name}.png", sbd / "cls" / f"{name}.mat"
        if voc_png.is_file():
            src, jobs = voc_png, voc_jobs
        elif mat.is_file():
            src, jobs = mat, sbd_jobs
        else:
            report.failed.append((out, f"no annotation: neither {voc_png} nor {mat} exists"))
            continue
        if not overwrite and _up_to_date(out, src):
            report.skipped.append(out)
        else:
            jobs.append((src, out))
    _run_jobs(_voc_png_job, voc_jobs, workers, report)
    _run_jobs(_sbd_job, sbd_jobs, workers, report)

    voc_train_set = set(voc_train)
    lists = {
        sets / "trainaug.txt": names,
        sets / "aug.txt": [n for n in names if n not in voc_train_set],
    }
    for path, items in lists.items():
        text = "".join(f"{n}\n" for n in items)
        (report.written if _write_text_atomic(path, text) else report.skipped).append(path)
        report.notes.append(f"{path.name}: {len(items)} names")
    report.notes.insert(0, count_msg)
    return report


# --- custom datasets -------------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Written next to the lists: the name and SHA-256 of every list this module wrote, so a
#: re-run may replace its own lists but never a file it did not write (without ``overwrite``).
LIST_MANIFEST = ".paddle_stdc_lists.json"
SPLIT_NAMES = ("train", "val", "test")


def find_pairs(
    root: Path, image_dir: str, label_dir: str, label_suffix: str, report: PrepareReport
) -> List[Tuple[str, str]]:
    """(image, label) paths relative to ``root``: every image under ``root/image_dir``
    (recursively) with the label at the same relative path under ``root/label_dir`` and
    ``label_suffix``; an image without a label is a failure in ``report`` (and left out)."""
    images_root, labels_root = root / image_dir, root / label_dir
    if not images_root.is_dir():
        raise FileNotFoundError(f"{images_root} does not exist")
    pairs = []
    for image in sorted(p for p in images_root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        label = (labels_root / image.relative_to(images_root)).with_suffix(label_suffix)
        if not label.is_file():
            report.failed.append((image, f"no label {label}"))
            continue
        rel = (image.relative_to(root).as_posix(), label.relative_to(root).as_posix())
        if any(" " in p for p in rel):
            raise ValueError(f"{rel}: PaddleSeg's file lists are space-separated; rename it")
        pairs.append(rel)
    if not pairs:
        raise FileNotFoundError(f"no image/label pairs under {images_root} and {labels_root}")
    return pairs


def split_sizes(n: int, val_fraction: float, test_fraction: float = 0.0) -> Tuple[int, int]:
    """(val, test) counts of ``n`` pairs; train gets the rest.

    Each is ``round(n * fraction)``, at least 1 when its fraction is > 0; train keeps at least
    one pair unless the fractions sum to 1 (``val_fraction=1``: every pair in val).
    """
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {f}")
    if val_fraction + test_fraction > 1.0 + 1e-9:
        raise ValueError(
            f"val_fraction + test_fraction must be at most 1, got {val_fraction + test_fraction}"
        )
    n_val, n_test = int(round(n * val_fraction)), int(round(n * test_fraction))
    n_val = max(n_val, 1) if val_fraction > 0 else 0
    n_test = max(n_test, 1) if test_fraction > 0 else 0
    if val_fraction + test_fraction >= 1.0 - 1e-9:  # nothing left in train
        n_test = min(n_test, n - (1 if val_fraction > 0 and n > 1 else 0))
        return n - n_test, n_test
    while n_val + n_test > n - 1 and n_val + n_test > 0:  # train keeps one
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_manifest(list_dir: Path) -> dict:
    import json

    path = list_dir / LIST_MANIFEST
    try:
        data = json.loads(path.read_text())
        return dict(data.get("files", {})) if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_lists(
    lists: Dict[str, Sequence[Tuple[str, str]]],
    list_dir: Path,
    overwrite: bool = False,
    report: Optional[PrepareReport] = None,
) -> PrepareReport:
    """Write ``<name>.txt`` (lines ``image label``) in ``list_dir`` for every non-empty list.

    A list file this module wrote and nobody changed since is replaced; a file with the same
    content is left alone; any other existing file is refused (``FileExistsError`` naming it,
    before anything is written) unless ``overwrite``. An empty list writes nothing and removes
    this module's own earlier file of that name.
    """
    import json

    report = report if report is not None else PrepareReport()
    list_dir = Path(list_dir)
    owned = _read_manifest(list_dir)
    texts = {f"{n}.txt": "".join(f"{i} {lbl}\n" for i, lbl in items) for n, items in lists.items()}
    foreign = []
    for name, text in texts.items():
        path = list_dir / name
        if text and path.is_file() and not overwrite:
            current = path.read_text()
            if current != text and owned.get(name) != _sha256(current):
                foreign.append(str(path))
    if foreign:
        raise FileExistsError(
            f"{', '.join(foreign)} already exist and were not written by this tool (or were "
            "edited since): write the lists elsewhere (list_dir / --list_dir) or pass "
            "overwrite (--overwrite) to replace them"
        )
    for name, text in texts.items():
        path, count = list_dir / name, len(lists[name[:-4]])
        if not text:
            if path.is_file() and owned.get(name) == _sha256(path.read_text()):
                path.unlink()
                report.notes.append(f"{name}: 0 pairs; removed the one written before")
            else:
                report.notes.append(f"{name}: 0 pairs, not written")
            owned.pop(name, None)
            continue
        (report.written if _write_text_atomic(path, text) else report.skipped).append(path)
        owned[name] = _sha256(text)
        report.notes.append(f"{name}: {count} pairs")
    manifest = json.dumps({"written_by": __name__, "files": owned}, indent=1, sort_keys=True)
    _write_text_atomic(list_dir / LIST_MANIFEST, manifest + "\n")
    return report


def write_file_lists(
    root: str | Path,
    image_dir: str = "images",
    label_dir: str = "labels",
    val_fraction: float = 0.2,
    seed: int = 0,
    label_suffix: str = ".png",
    test_fraction: float = 0.0,
    list_dir: Optional[str | Path] = None,
    overwrite: bool = False,
) -> PrepareReport:
    """``train.txt`` / ``val.txt`` (/ ``test.txt``) for PaddleSeg's ``type: Dataset`` from one
    folder of images and one of labels, split at random.

    Pairs come from :func:`find_pairs`, are shuffled with ``seed`` and split by
    :func:`split_sizes` (``val_fraction=0``: no val list; ``1``: every pair in val). Lines are
    ``image label`` relative to ``root``; the lists go to ``list_dir`` (default ``root``) by
    :func:`write_lists`, which never replaces a file it did not write unless ``overwrite``.
    """
    root = Path(root)
    report = PrepareReport()
    pairs = find_pairs(root, image_dir, label_dir, label_suffix, report)
    n_val, n_test = split_sizes(len(pairs), val_fraction, test_fraction)
    order = np.random.RandomState(seed).permutation(len(pairs))
    lists = {"val": sorted(pairs[i] for i in order[:n_val])}
    if test_fraction > 0:
        lists["test"] = sorted(pairs[i] for i in order[n_val : n_val + n_test])
    lists["train"] = sorted(pairs[i] for i in order[n_val + n_test :])
    return write_lists(lists, Path(list_dir) if list_dir else root, overwrite, report)


def write_split_lists(
    root: str | Path,
    splits: Dict[str, Tuple[str, str]],
    label_suffix: str = ".png",
    list_dir: Optional[str | Path] = None,
    overwrite: bool = False,
) -> PrepareReport:
    """One list per split of a dataset that comes split, e.g. CamVid's ``train/ trainannot/
    val/ valannot/ test/ testannot/``: ``splits`` maps a list name to its (image folder, label
    folder) under ``root``. Pairing, lines and writing as :func:`write_file_lists`."""
    root = Path(root)
    if not splits:
        raise ValueError("no splits given: name at least one, e.g. train=train:trainannot")
    report = PrepareReport()
    lists = {
        name: find_pairs(root, images, labels, label_suffix, report)
        for name, (images, labels) in splits.items()
    }
    return write_lists(lists, Path(list_dir) if list_dir else root, overwrite, report)
