"""Resolve a weights reference (local path or URL) to a local ``.pdparams`` file.

Downloads go to ``$PADDLE_STDC_HOME`` (default ``~/.cache/paddle_stdc``), are written to a
temporary name and renamed when complete (after their SHA-256 is checked, when one is known),
and archives (``.tar.gz``/``.tgz``/``.tar``/``.zip``) are unpacked. Offline, a failed download
raises :class:`WeightsUnavailableError` telling the user how to point at a local file or to
disable the weights.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


class WeightsUnavailableError(RuntimeError):
    """A weights file could neither be found locally nor downloaded."""


class ChecksumError(WeightsUnavailableError):
    """A weights file does not have the published SHA-256."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(
    path: Path,
    sha256: Optional[str] = None,
    sha256_prefix: Optional[str] = None,
    label: Optional[str] = None,
) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the given SHA-256 (or hash prefix)."""
    if not (sha256 or sha256_prefix):
        return
    actual = sha256_of(path)
    want = (sha256 or sha256_prefix).lower()
    if not actual.startswith(want):
        raise ChecksumError(
            f"{label or path} has SHA-256 {actual}, expected {want}{'' if sha256 else '…'}: "
            "the file is corrupt, truncated or a different release"
            + ("" if label else "; delete it and retry")
        )


def cache_dir() -> Path:
    """Directory that holds downloaded weights."""
    return Path(os.environ.get("PADDLE_STDC_HOME", "~/.cache/paddle_stdc")).expanduser()


def is_url(ref: str) -> bool:
    return urlparse(str(ref)).scheme in ("http", "https", "ftp")


def _cache_name(url: str) -> str:
    parts = [p for p in urlparse(url).path.split("/") if p]
    # .../stdc1_seg_cityscapes_1024x512_80k/model.pdparams -> keep the folder name too.
    return "__".join(parts[-2:]) if len(parts) >= 2 else parts[-1]


def _download(
    url: str,
    dest: Path,
    timeout: float,
    sha256: Optional[str] = None,
    sha256_prefix: Optional[str] = None,
) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        verify_checksum(Path(tmp), sha256, sha256_prefix, label=f"download of {url}")
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


def _offline_help(url: str, dest: Path, err: Exception) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"could not download pretrained weights from {url} ({err}).\n"
        f"  - Offline? Fetch the file on a connected machine and put it at {dest}, or\n"
        "  - point the config at a local copy, e.g. "
        "`--opts model.backbone.pretrained=/path/to/model.pdparams`, or\n"
        "  - train without these weights: `--opts model.backbone.pretrained=None` "
        "(or `model.pretrained=None`)."
    )


def fetch_url(
    url: str,
    timeout: float = 30.0,
    sha256: Optional[str] = None,
    sha256_prefix: Optional[str] = None,
) -> Path:
    """Download ``url`` once into the cache (no unpacking) and return the cached file.

    A known SHA-256 (or published hash prefix) is checked before the file enters the cache and
    again when a cached copy is reused.
    """
    dest = cache_dir() / _cache_name(url)
    if not dest.is_file():
        try:
            _download(url, dest, timeout, sha256, sha256_prefix)
        except ChecksumError:
            raise
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            raise _offline_help(url, dest, err) from err
    else:
        verify_checksum(dest, sha256, sha256_prefix)
    return dest


def resolve_weights(
    ref: str,
    timeout: float = 30.0,
    sha256: Optional[str] = None,
    sha256_prefix: Optional[str] = None,
) -> Path:
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
        verify_checksum(path, sha256, sha256_prefix)
        if path.name.endswith(_ARCHIVE_SUFFIXES):
            return _unpack(path)
        return path

    dest = fetch_url(ref, timeout, sha256, sha256_prefix)
    if dest.name.endswith(_ARCHIVE_SUFFIXES):
        return _unpack(dest)
    return dest
