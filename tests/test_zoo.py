"""The registry of pretrained weights: consistent entries, each exactness claim backed by a
reference fixture, README in sync, verified cached downloads, offline use with a local path,
and ``create_model`` / configs that build the entry's model options before loading.
Downloads here only ever hit a server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import socket
import threading

import numpy as np
import paddle
import pytest

import paddle_stdc
from paddle_stdc import zoo
from paddle_stdc.convert import SOURCES, spec_for
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.registry import list_models
from paddle_stdc.utils.download import ChecksumError, WeightsUnavailableError

from . import reference_rule as R
from .conftest import ROOT
from .test_reference_parity import convert_fixture, our_outputs
from .torch_format import save_torch_legacy, save_torch_zip

ENTRIES = list(zoo.PRETRAINED)
PROVEN = [w for w in ENTRIES if w.proof not in (None, zoo.PADDLESEG_PROOF)]
assert ENTRIES and PROVEN


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda w: w.name)
def test_entry_is_consistent(entry):
    assert not zoo._check_entry(entry), zoo._check_entry(entry)
    assert entry.model in list_models(kind=None)
    assert entry.convert_from is None or entry.convert_from in SOURCES
    assert entry.direct_download or entry.convert_from  # manual files are torch files
    if entry.convert_from:  # the converter knows this pair and names the options
        assert spec_for(entry.convert_from, entry.model, {}).model_kwargs == entry.model_kwargs
    if entry.proof not in (None, zoo.PADDLESEG_PROOF):
        assert entry.proof in R.fixture_names()
        assert entry.convert_from is not None
    if entry.sha256 is None and entry.sha256_prefix is None:
        assert "sha256" not in entry.note  # no checksum is invented anywhere


def test_names_are_unique():
    names = [w.name for w in ENTRIES]
    assert len(names) == len(set(names))


@pytest.mark.slow
@pytest.mark.parametrize("entry", PROVEN, ids=lambda w: w.name)
def test_entry_matches_what_its_fixture_proves(entry, tmp_path, capsys):
    """The CLI, on a file of the entry's source and model, names the entry's model and options;
    tests/test_reference_parity.py shows that model computes what the source's code computes."""
    summary = convert_fixture(entry.proof, tmp_path, capsys)
    assert summary["exact"], summary
    assert (summary["model"], summary["model_kwargs"]) == (entry.model, entry.model_kwargs)


def test_issue_coverage():
    by_source = {}
    for w in ENTRIES:
        by_source.setdefault(w.source, set()).add((w.kind, w.model, w.dataset))
    assert {("segmentation", m, d) for m in ("stdc1_seg", "stdc2_seg")
            for d in ("Cityscapes", "VOC12+Aug")} <= by_source["PaddleSeg"]  # fmt: skip
    assert ("segmentation", "bisenetv2", "Cityscapes") in by_source["PaddleSeg"]
    assert {("backbone", "STDC1", "ImageNet-1k"), ("backbone", "STDC2", "ImageNet-1k")} <= (
        by_source["PaddleSeg"] & by_source["STDC-Seg (official)"]
    )
    mm = {m for _, m, _ in by_source["mmsegmentation"]}
    assert {"stdc1_seg", "stdc2_seg", "bisenetv1_r18", "bisenetv1_r50", "bisenetv2"} <= mm
    assert zoo.get_pretrained("sssegmentation_bisenetv2_fp16_cityscapes").miou == 74.17
    # published numbers are in the table, not typed into the README by hand
    assert zoo.get_pretrained("paddleseg_stdc2_seg_cityscapes").miou == 77.60
    assert zoo.get_pretrained("mmseg_stdc1_in1k-pre_cityscapes").miou_ms_flip == 76.97
    assert zoo.get_pretrained("official_stdc1_seg50").eval_scale == 0.5


def test_readme_model_zoo_is_up_to_date():
    readme = (ROOT / "docs" / "model_zoo.md").read_text()
    assert zoo.MARK_BEGIN in readme
    assert zoo.render_zoo_table() in readme, "README model zoo is stale: run tools/model_zoo.py"
    for w in ENTRIES:
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


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLE_STDC_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _source_file(fixture_name: str, path) -> object:
    """A checkpoint of the fixture's source, as the source writes it (reference rule weights)."""
    return save_torch_zip(R.checkpoint(R.load_fixture(fixture_name)), path)


def test_download_is_verified_and_cached(tmp_path, cache, server):
    root, base = server
    (root / "stdc").mkdir()
    data = save_torch_legacy(
        R.checkpoint(R.load_fixture("official_stdc1_imagenet")),
        root / "stdc" / "STDCNet813M_73.91.tar",
    )
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    url = f"{base}/stdc/STDCNet813M_73.91.tar"
    base_entry = zoo.get_pretrained("official_stdcnet813_imagenet")

    bad = dataclasses.replace(base_entry, url=url, direct_download=True, sha256="0" * 64)
    with pytest.raises(ChecksumError, match=digest):
        zoo.fetch(bad)
    assert not list(cache.rglob("*.tar*"))  # nothing unverified is kept

    good = dataclasses.replace(base_entry, url=url, direct_download=True, sha256=digest)
    path = zoo.fetch(good)
    assert path.is_file() and str(path).startswith(str(cache))
    data.unlink()  # served once; the cache answers from now on
    assert zoo.fetch(good) == path
    state = paddle.load(str(zoo.pdparams_for(good)))
    model = paddle_stdc.create_model("STDC1", **good.model_kwargs)
    assert set(state) == set(model.state_dict())


def test_offline_errors_name_the_url_and_the_local_path_option(cache):
    url = f"http://127.0.0.1:{_closed_port()}/x/model.pdparams"
    entry = dataclasses.replace(zoo.get_pretrained("paddleseg_stdc1_seg_cityscapes"), url=url)
    with pytest.raises(WeightsUnavailableError) as err:
        zoo.fetch(entry, timeout=5)
    assert url in str(err.value) and "path=" in str(err.value)
    manual = zoo.get_pretrained("official_stdc1_seg50")
    with pytest.raises(WeightsUnavailableError, match="by hand") as err:
        zoo.fetch(manual)
    assert manual.url in str(err.value)
    with pytest.raises(WeightsUnavailableError, match="by hand"):
        paddle_stdc.create_model("stdc2_seg", backbone_pretrained="official_stdcnet1446_imagenet")


def test_local_path_wins_and_is_checked(tmp_path, cache):
    local = _source_file("official_stdc1_seg", tmp_path / "model_maxmIOU50.pth")
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    entry = zoo.get_pretrained("official_stdc1_seg50")  # manual download: path is the only way
    assert zoo.fetch(entry, path=str(local)) == local
    with pytest.raises(ChecksumError):
        zoo.fetch(dataclasses.replace(entry, sha256="f" * 64), path=str(local))
    assert zoo.fetch(dataclasses.replace(entry, sha256=digest), path=str(local)) == local
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        zoo.fetch(entry, path=str(tmp_path / "missing.pth"))


#: entries without a published checksum (a fixture file stands in for the release), one per
#: source family; loading by name must build the entry's options and reproduce the source.
_BY_NAME_CASES = [
    "official_stdc1_seg50",
    "coincheung_bisenetv1_cityscapes",
    "sssegmentation_bisenetv2_cityscapes",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", _BY_NAME_CASES)
def test_create_model_with_an_entry_builds_its_options_and_reproduces_the_source(
    name, tmp_path, cache
):
    entry = zoo.get_pretrained(name)
    zoo.pdparams_for(entry, path=str(_source_file(entry.proof, tmp_path / "release.pth")))
    model = paddle_stdc.create_model(entry.model, pretrained=name)  # from the cache, by name
    model.eval()
    for tag, arrays in R.outputs(R.load_fixture(entry.proof)).items():
        with paddle.no_grad():
            ours = our_outputs(model, paddle.to_tensor(arrays["input"]), ["logits"])["logits"]
        rel = np.abs(ours - arrays["logits"]).max() / np.abs(arrays["logits"]).max()
        assert rel <= 1e-4, (name, tag, rel)


def test_an_entry_of_another_model_is_refused(cache):
    with pytest.raises(ValueError, match="not of stdc2_seg"):
        paddle_stdc.create_model("stdc2_seg", pretrained="paddleseg_stdc1_seg_cityscapes")
    with pytest.raises(ValueError, match="pass it as `pretrained`"):
        paddle_stdc.create_model("stdc1_seg", backbone_pretrained="paddleseg_stdc1_seg_cityscapes")


@pytest.mark.slow
def test_config_backbone_pretrained_entry_applies_its_options(tmp_path, cache, tiny_config):
    """``--opts model.backbone.pretrained=ENTRY``: the backbone is built with the entry's
    options (the source's pooling convention), then the converted weights load."""
    entry = zoo.get_pretrained("official_stdcnet813_imagenet")
    converted = zoo.pdparams_for(
        entry, path=str(_source_file(entry.proof, tmp_path / "STDCNet813M_73.91.tar"))
    )
    cfg = load_config(str(tiny_config), opts=[f"model.backbone.pretrained={entry.name}"])
    backbone = Builder(cfg).model.cp.backbone
    state = paddle.load(str(converted))
    for key, value in backbone.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[key].numpy(), err_msg=key)
    arrays = R.outputs(R.load_fixture(entry.proof))["64x128"]  # the source's own features
    backbone.eval()
    with paddle.no_grad():
        feat32 = backbone(paddle.to_tensor(arrays["input"]))[-1].numpy()
    assert np.abs(feat32 - arrays["feat32"]).max() <= 1e-4 * np.abs(arrays["feat32"]).max()
