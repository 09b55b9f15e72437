"""The table of known checkpoints: consistent entries, README in sync, verified cached downloads,
offline use with a local path. Downloads here only ever hit a server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import socket
import threading

import pytest

import paddle_stdc
from paddle_stdc import zoo
from paddle_stdc.convert import BACKBONE_TARGETS, SOURCES
from paddle_stdc.convert.sources import spec_for
from paddle_stdc.models.weights import load_pretrained
from paddle_stdc.utils.download import ChecksumError, WeightsUnavailableError

from . import source_layouts as L
from .conftest import ROOT
from .torch_format import random_state, save_torch_legacy


def test_entries_are_consistent():
    names = [w.name for w in zoo.KNOWN_WEIGHTS]
    assert len(names) == len(set(names))
    models = set(paddle_stdc.list_models())
    for w in zoo.KNOWN_WEIGHTS:
        assert not zoo._check_entry(w), (w.name, zoo._check_entry(w))
        if w.kind == "segmentation":
            assert w.model in models, w.name
        else:
            assert w.model in set(BACKBONE_TARGETS) | models, w.name
        assert w.convert_from is None or w.convert_from in SOURCES, w.name
        assert w.direct_download or w.convert_from, w.name  # manual files are torch files
        if w.convert_from:  # the converter builds the same model the table names
            spec = spec_for(w.convert_from, w.model, {})
            assert spec.model_kwargs == dict(w.model_kwargs), w.name
        if w.sha256 is None and w.sha256_prefix is None:
            assert "sha256" not in w.note  # no checksum is invented anywhere


def test_issue_coverage():
    by_source = {}
    for w in zoo.KNOWN_WEIGHTS:
        by_source.setdefault(w.source, set()).add((w.kind, w.model, w.dataset))
    assert {("segmentation", m, d) for m in ("stdc1_seg", "stdc2_seg")
            for d in ("Cityscapes", "VOC12+Aug")} <= by_source["PaddleSeg"]  # fmt: skip
    assert ("segmentation", "bisenetv2", "Cityscapes") in by_source["PaddleSeg"]
    assert {("backbone", "STDC1", "ImageNet-1k"), ("backbone", "STDC2", "ImageNet-1k")} <= (
        by_source["PaddleSeg"] & by_source["STDC-Seg (official)"]
    )
    mm = {m for _, m, _ in by_source["mmsegmentation"]}
    assert {"stdc1_seg", "stdc2_seg", "bisenetv1_r18", "bisenetv1_r50", "ResNet18V1c"} <= mm
    assert ("segmentation", "bisenetv2", "Cityscapes") in by_source["sssegmentation"]
    # published numbers are in the table, not typed into the README by hand
    assert zoo.get_weights("paddleseg_stdc2_seg_cityscapes").miou == 77.60
    assert zoo.get_weights("mmseg_stdc1_in1k-pre_cityscapes").miou_ms_flip == 76.97
    assert zoo.get_weights("mmseg_stdc1_in1k-pre_cityscapes_2021").miou == 75.10


def test_readme_model_zoo_is_up_to_date():
    readme = (ROOT / "README.md").read_text()
    assert zoo.MARK_BEGIN in readme
    assert zoo.render_zoo_table() in readme, "README model zoo is stale: run tools/model_zoo.py"
    for w in zoo.KNOWN_WEIGHTS:
        assert w.name in readme


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _entry(**changes) -> zoo.KnownWeights:
    base = zoo.get_weights("official_stdcnet813_imagenet")
    return dataclasses.replace(base, **changes)


def test_download_is_verified_and_cached(tmp_path, monkeypatch, server):
    monkeypatch.setenv("PADDLE_STDC_HOME", str(tmp_path / "cache"))
    root, base = server
    data = save_torch_legacy({"state_dict": random_state(L.official_stdcnet((2, 2, 2)))},
                             root / "STDCNet813M_73.91.tar")  # fmt: skip
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    url = f"{base}/stdc/STDCNet813M_73.91.tar"
    (root / "stdc").mkdir()
    data.rename(root / "stdc" / data.name)

    bad = _entry(url=url, direct_download=True, sha256="0" * 64)
    with pytest.raises(ChecksumError, match=digest):
        zoo.fetch(bad)
    assert not list((tmp_path / "cache").rglob("*.tar*"))  # nothing unverified is kept

    good = _entry(url=url, direct_download=True, sha256=digest)
    path = zoo.fetch(good)
    assert path.is_file() and str(path).startswith(str(tmp_path / "cache"))
    (root / "stdc" / data.name).unlink()  # served once; the cache answers from now on
    assert zoo.fetch(good) == path
    pdparams = zoo.pdparams_for(good)
    model = paddle_stdc.create_model("stdc1_seg", num_classes=19)
    assert load_pretrained(model.cp.backbone, str(pdparams), strict=True).exact


def test_offline_errors_name_the_url_and_the_local_path_option(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLE_STDC_HOME", str(tmp_path))
    url = f"http://127.0.0.1:{_closed_port()}/x/model.pdparams"
    entry = dataclasses.replace(zoo.get_weights("paddleseg_stdc1_seg_cityscapes"), url=url)
    with pytest.raises(WeightsUnavailableError) as err:
        zoo.fetch(entry, timeout=5)
    assert url in str(err.value) and "path=" in str(err.value)
    manual = zoo.get_weights("official_stdc1_seg50")
    with pytest.raises(WeightsUnavailableError, match="by hand") as err:
        zoo.fetch(manual)
    assert manual.url in str(err.value)


def test_mmseg_bisenetv1_entry_loads_into_the_conv_bn_model(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLE_STDC_HOME", str(tmp_path / "cache"))
    entry = dataclasses.replace(
        zoo.get_weights("mmseg_bisenetv1_r18_in1k-pre_cityscapes"), sha256_prefix=None
    )
    assert entry.exact and entry.model_call == "bisenetv1_r18(ffm='conv_bn')"
    local = save_torch_legacy({"state_dict": random_state(L.mmseg_bisenetv1(18))},
                              tmp_path / "bisenetv1.pth")  # fmt: skip
    pdparams = zoo.pdparams_for(entry, path=str(local))
    model = paddle_stdc.create_model(entry.model, **dict(entry.model_kwargs))
    assert load_pretrained(model, str(pdparams), strict=True).exact


def test_local_path_wins_and_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLE_STDC_HOME", str(tmp_path / "cache"))
    local = save_torch_legacy({"state_dict": random_state(L.official_stdc_seg((2, 2, 2)))},
                              tmp_path / "model_maxmIOU50.pth")  # fmt: skip
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    entry = zoo.get_weights("official_stdc1_seg50")  # manual download: path is the only way
    assert zoo.fetch(entry, path=str(local)) == local
    pdparams = zoo.pdparams_for(entry, path=str(local))
    model = paddle_stdc.create_model("stdc1_seg", num_classes=19, pretrained=str(pdparams))
    assert model is not None
    with pytest.raises(ChecksumError):
        zoo.fetch(dataclasses.replace(entry, sha256="f" * 64), path=str(local))
    assert zoo.fetch(dataclasses.replace(entry, sha256=digest), path=str(local)) == local
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        zoo.fetch(entry, path=str(tmp_path / "missing.pth"))


def test_inexact_entries_convert_only_with_strict_false(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLE_STDC_HOME", str(tmp_path / "cache"))
    local = save_torch_legacy(random_state(L.coincheung_bisenetv2()), tmp_path / "b.pth")
    entry = zoo.get_weights("coincheung_bisenetv2_cityscapes")
    assert not entry.exact
    from paddle_stdc.convert import ConversionError

    with pytest.raises(ConversionError):
        zoo.pdparams_for(entry, path=str(local))
    assert zoo.pdparams_for(entry, path=str(local), strict=False).is_file()


def test_pretrained_accepts_a_zoo_name(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLE_STDC_HOME", str(tmp_path / "cache"))
    # put a converted file where pdparams_for caches it: a name then loads with no download
    local = save_torch_legacy({"state_dict": random_state(L.official_stdcnet((2, 2, 2)))},
                              tmp_path / "STDCNet813M_73.91.tar")  # fmt: skip
    zoo.pdparams_for("official_stdcnet813_imagenet", path=str(local))
    manual = zoo.get_weights("official_stdcnet813_imagenet")
    assert not manual.direct_download
    converted = tmp_path / "cache" / "converted" / "official_stdcnet813_imagenet.pdparams"
    assert converted.is_file()
    model = paddle_stdc.create_model(
        "stdc1_seg", backbone_pretrained="official_stdcnet813_imagenet"
    )
    assert model is not None
    with pytest.raises(WeightsUnavailableError, match="by hand"):
        paddle_stdc.create_model("stdc2_seg", backbone_pretrained="official_stdcnet1446_imagenet")
