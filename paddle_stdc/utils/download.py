"""Resolve a weights reference (local path or URL) to a local ``.pdparams`` file.

Downloads go to ``$PADDLE_STDC_HOME`` (default ``~/.cache/paddle_stdc``), are written to a
temporary name and renamed when complete, and archives (``.tar.gz``/``.tgz``/``.tar``/``.zip``)
are unpacked. Offline, a failed download raises :class:`WeightsUnavailableError` telling the
user how to point at a local file or to disable the weights.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlparse

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


class WeightsUnavailableError(RuntimeError):
    """A weights file could neither be found locally nor downloaded."""


def cache_dir() -> Path:
    """Directory that holds downloaded weights."""
    return Path(os.environ.get("PADDLE_STDC_HOME", "~/.cache/paddle_stdc")).expanduser()


def is_url(ref: str) -> bool:
    return urlparse(str(ref)).scheme in ("http", "https", "ftp")


def _cache_name(url: str) -> str:
    parts = [p for p in urlparse(url).path.split("/") if p]
    # .../stdc1_seg_cityscapes_1024x512_80k/model.pdparams -> keep the folder name too.
    return "__".join(parts[-2:]) if len(parts) >= 2 else parts[-1]


def _download(url: str, dest: Path, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _unpack(archive: Path) -> Path:
    target = archive.with_name(archive.name + ".d")
    if not target.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=archive.parent))
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
        os.replace(tmp, target)
    found = sorted(target.rglob("*.pdparams"))
    if not found:
        raise WeightsUnavailableError(f"archive {archive} contains no .pdparams file")
    return found[0]


def resolve_weights(ref: str, timeout: float = 30.0) -> Path:
    """Local ``.pdparams`` path for ``ref``: a file, a folder with model.pdparams, or a URL."""
    ref = str(ref)
    if not is_url(ref):
        path = Path(ref).expanduser()
        if path.is_dir() and (path / "model.pdparams").is_file():
            path = path / "model.pdparams"
        if not path.is_file():
            raise WeightsUnavailableError(
                f"weights file not found: {ref}. Give an existing .pdparams path or a folder "
                "containing model.pdparams, or set the `pretrained` key to null."
            )
        if path.name.endswith(_ARCHIVE_SUFFIXES):
            return _unpack(path)
        return path

    dest = cache_dir() / _cache_name(ref)
    if not dest.is_file():
        try:
            _download(ref, dest, timeout)
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            raise WeightsUnavailableError(
                f"could not download pretrained weights from {ref} ({err}).\n"
                f"  - Offline? Fetch the file on a connected machine and put it at {dest}, or\n"
                "  - point the config at a local copy, e.g. "
                "`--opts model.backbone.pretrained=/path/to/model.pdparams`, or\n"
                "  - train without these weights: `--opts model.backbone.pretrained=None` "
                "(or `model.pretrained=None`)."
            ) from err
    if dest.name.endswith(_ARCHIVE_SUFFIXES):
        return _unpack(dest)
    return dest
