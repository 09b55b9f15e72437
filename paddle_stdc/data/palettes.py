"""Per-dataset colour palettes for predictions and VisualDL images (no extra dependencies).

- Cityscapes: the official colours of the 19 train ids (cityscapesscripts' label table; a
  test checks this copy against the package, which prediction does not need).
- Pascal VOC and any other dataset: VOC's bit-interleaved palette, deterministic and distinct
  for up to 256 classes (class 0 black).
- A custom dataset can name its own: ``palette:`` at the top level of a config, or
  ``tools/predict.py --palette``, takes ``cityscapes``, ``voc``, a list of ``[R, G, B]`` or a
  file (``.json`` list of triples, or text with one ``R G B`` line per class).

Class names come from the config's dataset (:func:`dataset_class_names`, one rule for
training logs, VisualDL, val/predict and export): a ``class_names`` list in the dataset's
section, else a ``labels.txt`` (one name a line, PaddleX's and PaddleLabel's file) in its
``dataset_root`` or next to its file lists, else Cityscapes' 19 or VOC's 21 built-in names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence

import numpy as np

from deploy.schema import CITYSCAPES_CLASSES, VOC_CLASSES  # noqa: F401  (re-exported)

#: Official Cityscapes colours of the 19 train ids (cityscapesscripts' labels table).
CITYSCAPES_PALETTE = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
        (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ],
    dtype=np.uint8,
)  # fmt: skip

# The class names live in deploy's schema (deploy never imports paddle_stdc; the reverse is fine).


def voc_palette(num_classes: int = 256) -> np.ndarray:
    """The Pascal VOC bit-interleaved palette, (num_classes, 3) uint8; also the generic one."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for idx in range(num_classes):
        label, r, g, b = idx, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((label >> 0) & 1) << shift
            g |= ((label >> 1) & 1) << shift
            b |= ((label >> 2) & 1) << shift
            label >>= 3
        palette[idx] = (r, g, b)
    return palette


#: Named palettes, by lower-cased dataset type or short name.
NAMED_PALETTES = {
    "cityscapes": CITYSCAPES_PALETTE,
    "voc": voc_palette(256),
    "pascalvoc": voc_palette(256),
}


def _as_palette(colors: Any, origin: str) -> np.ndarray:
    arr = np.asarray(colors)
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
        raise ValueError(f"palette {origin}: expected a list of [R, G, B] triples, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() > 255:
        raise ValueError(f"palette {origin}: colours must be integers in 0..255")
    if len(arr) > 256:
        raise ValueError(f"palette {origin}: at most 256 colours, got {len(arr)}")
    return arr.astype(np.uint8)


def load_palette(spec: Any) -> np.ndarray:
    """A palette from a name (``cityscapes``, ``voc``), a list of triples or a .json/.txt file."""
    if isinstance(spec, np.ndarray) or isinstance(spec, (list, tuple)):
        return _as_palette(spec, "list")
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"palette must be a name, a file or a list of [R, G, B], got {spec!r}")
    key = str(spec).lower()
    if key in NAMED_PALETTES:
        return NAMED_PALETTES[key]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(
            f"palette {spec!r} is neither a known name ({', '.join(sorted(NAMED_PALETTES))}) "
            "nor a file"
        )
    if path.suffix.lower() == ".json":
        return _as_palette(json.loads(path.read_text()), str(path))
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if any(len(r) != 3 for r in rows):
        raise ValueError(f"palette {path}: every line must be 'R G B'")
    return _as_palette([[int(v) for v in r] for r in rows], str(path))


def palette_for(
    num_classes: int, dataset: Optional[str] = None, palette: Optional[Any] = None
) -> np.ndarray:
    """Palette of at least ``num_classes`` colours.

    ``palette`` (name, list or file, see :func:`load_palette`) wins; else the dataset type
    decides: Cityscapes colours for a 19-class Cityscapes (or unnamed) dataset, VOC's palette
    for PascalVOC and anything else.
    """
    if palette is not None:
        chosen = load_palette(palette)
        if len(chosen) < num_classes:
            raise ValueError(f"palette has {len(chosen)} colours for {num_classes} classes")
        return chosen
    if num_classes == 19 and (dataset is None or "cityscapes" in dataset.lower()):
        return CITYSCAPES_PALETTE
    return voc_palette(max(num_classes, 256))


def class_names_for(num_classes: int, dataset: Optional[str] = None) -> Optional[Sequence[str]]:
    """Class names of the known datasets (Cityscapes, VOC), else None."""
    name = (dataset or "").lower()
    if num_classes == 19 and (not name or "cityscapes" in name):
        return CITYSCAPES_CLASSES
    if num_classes == 21 and "voc" in name:
        return VOC_CLASSES
    return None


#: The labels file :func:`dataset_class_names` looks for (one class name a line).
LABELS_FILE = "labels.txt"
#: Class counts of the dataset types with built-in names (configs may leave num_classes out).
BUILTIN_NUM_CLASSES = {"cityscapes": 19, "pascalvoc": 21}
_SPLITS = ("train_dataset", "val_dataset", "test_dataset")


def _checked_names(names: Sequence[Any], origin: str, num_classes: Optional[int]) -> List[str]:
    """``names`` as strings; empty, non-scalar or repeated names, or a count other than
    ``num_classes``, are a ValueError naming ``origin``."""
    out = []
    for k, name in enumerate(names):
        if isinstance(name, bool) or not isinstance(name, (str, int, float)) or not str(name).strip():
            raise ValueError(f"{origin}: name {k} is {name!r}; give one non-empty name per class")
        out.append(str(name).strip())
    repeated = sorted({n for n in out if out.count(n) > 1})
    if repeated:
        raise ValueError(f"{origin}: {', '.join(map(repr, repeated))} named more than once")
    if num_classes is not None and len(out) != int(num_classes):
        raise ValueError(
            f"{origin} has {len(out)} names but the dataset has {num_classes} classes "
            "(num_classes): give one name per class id, in id order"
        )
    return out


def read_labels_file(path: str | Path, num_classes: Optional[int] = None) -> List[str]:
    """Class names from a labels file: one name a line, in class-id order (trailing blank
    lines ignored; a blank line between names is an error, it would shift every later id)."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line:
            raise ValueError(f"{path}: line {number} is empty; write one class name a line")
    return _checked_names(lines, str(path), num_classes)


def labels_file_for(dataset_cfg: Mapping[str, Any]) -> Optional[Path]:
    """The dataset's labels file: ``dataset_root/labels.txt``, else one next to its
    train/val/test list; None if there is none."""
    places = [dataset_cfg.get("dataset_root")]
    places += [Path(p).parent for p in (dataset_cfg.get(k) for k in ("train_path", "val_path",
               "test_path")) if p]  # fmt: skip
    for folder in places:
        if folder is not None and Path(folder, LABELS_FILE).is_file():
            return Path(folder, LABELS_FILE)
    return None


def dataset_num_classes(dataset_cfg: Mapping[str, Any]) -> Optional[int]:
    """The dataset section's ``num_classes``, else its built-in type's count, else None."""
    if dataset_cfg.get("num_classes") is not None:
        return int(dataset_cfg["num_classes"])
    return BUILTIN_NUM_CLASSES.get(str(dataset_cfg.get("type", "")).lower())


def dataset_class_names(
    dataset_cfg: Optional[Mapping[str, Any]], where: str = "dataset"
) -> Optional[List[str]]:
    """Class names of a config's dataset section, or None when it names none.

    In order: its ``class_names`` list, a :data:`LABELS_FILE` (:func:`labels_file_for`),
    the built-in names of Cityscapes (19) and PascalVOC (21). A count other than the
    dataset's ``num_classes`` is a ValueError naming ``where`` (e.g. ``val_dataset``) or the file.
    """
    if not dataset_cfg:
        return None
    num_classes = dataset_num_classes(dataset_cfg)
    given = dataset_cfg.get("class_names")
    if given is not None:
        if not isinstance(given, (list, tuple)):
            raise ValueError(f"{where}.class_names must be a list of names, got {given!r}")
        return _checked_names(given, f"{where}.class_names", num_classes)
    labels = labels_file_for(dataset_cfg)
    if labels is not None:
        return read_labels_file(labels, num_classes)
    kind = str(dataset_cfg.get("type", ""))
    if num_classes is None or kind.lower() not in BUILTIN_NUM_CLASSES:
        return None
    names = class_names_for(num_classes, kind)
    return list(names) if names is not None else None


def config_class_names(config: Mapping[str, Any]) -> Optional[List[str]]:
    """Class names of a whole config (its ``dic``): those its train/val/test datasets give
    (:func:`dataset_class_names`); None if none names them. Two datasets naming different
    classes are a ValueError."""
    found = {}
    for split in _SPLITS:
        names = dataset_class_names(config.get(split), split)
        if names is not None:
            found[split] = names
    first = next(iter(found), None)
    for split, names in found.items():
        if names != found[first]:
            raise ValueError(
                f"{first} and {split} name different classes ({found[first][:3]}... vs "
                f"{names[:3]}...): give both the same class_names (or one labels file)"
            )
    return found[first] if first is not None else None
