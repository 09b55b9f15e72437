"""Which images a command works on, and where each one's outputs go.

``--image_path`` takes what PaddleSeg's tools take: one image, a folder (searched recursively)
or a list file (``.txt``: one image per line; PaddleSeg's ``image label`` pairs use the first
column; blank and ``#`` lines are skipped; relative paths are taken from the list file's folder,
else from the working directory). :func:`output_names` gives every image a distinct relative
output name that keeps its subfolders, so two ``a.png`` in different folders never overwrite
each other. Used by ``tools/predict.py``, ``deploy/python/infer.py``, quantization and serving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Union

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LIST_SUFFIXES = (".txt", ".lst", ".list")


class ImageListError(ValueError):
    """``--image_path`` names nothing usable; the message names the path (and line)."""


def _from_list_file(list_file: Path) -> List[Path]:
    images = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line.split()[0])
        candidates = [entry] if entry.is_absolute() else [list_file.parent / entry, entry]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ImageListError(f"{list_file}:{number}: image {entry} does not exist")
        images.append(found)
    if not images:
        raise ImageListError(f"{list_file} lists no images")
    return images


def list_images(path: Union[str, Path]) -> List[Path]:
    """The images ``path`` names: an image file, a list file, or a folder (sorted, recursive)."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in LIST_SUFFIXES:
            return _from_list_file(path)
        return [path]
    if not path.is_dir():
        raise ImageListError(f"--image_path {path} is neither an image, a list file nor a folder")
    images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ImageListError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {path}")
    return images


def output_names(images: Sequence[Path]) -> Dict[Path, str]:
    """Image -> a relative output name without suffix (``sub/dir/name``), distinct per image.

    Names are relative to the images' deepest common folder, so subfolders are kept; two images
    that differ only in their suffix (``a.png``, ``a.jpg``) keep it (``a_png``, ``a_jpg``).
    """
    if not images:
        return {}
    resolved = [Path(p).resolve() for p in images]
    parents = [p.parent for p in resolved]
    common = parents[0]
    while not all(common == q or common in q.parents for q in parents):
        common = common.parent
    stems = {p: p.relative_to(common).with_suffix("").as_posix() for p in resolved}
    counts: Dict[str, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    names = {}
    for original, res in zip(images, resolved):
        stem = stems[res]
        if counts[stem] > 1:
            stem = f"{stem}_{res.suffix.lstrip('.').lower()}"
        names[Path(original)] = stem
    return names
