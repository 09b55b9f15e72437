"""Converted weights compute what the ORIGINAL implementations compute.

For every fixture of ``tests/fixtures/reference`` (outputs of official STDC-Seg, mmsegmentation,
CoinCheung/BiSeNet and sssegmentation code; see ``reference_rule.py``): regenerate the source
checkpoint, write it as the source's PyTorch file, convert it with ``tools/convert_weights.py
--json``, build the model the CLI names with its options, load strictly, run the stored input in
eval mode and compare every stored array. Required: max|ours - ref| <= 1e-4 * max|ref| and, for
logits, >= 99.99% argmax agreement, at both stored sizes (80x144 is not divisible by 32).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import paddle
import pytest

import paddle_stdc
from paddle_stdc.weights import load_state

from . import reference_rule as R
from .conftest import ROOT
from .torch_format import save_torch_zip

REL_TOL = 1e-4
ARGMAX_MIN = 0.9999

#: fixture name prefix -> ``--src`` of the CLI
_SOURCE = {
    "official": "stdc-official",
    "mmseg": "mmseg",
    "coincheung": "coincheung",
    "sssegmentation": "sssegmentation",
}

FIXTURES = R.fixture_names()
assert FIXTURES, f"no reference fixtures found in {R.FIXTURES}"

_spec = importlib.util.spec_from_file_location(
    "convert_weights_cli", ROOT / "tools/convert_weights.py"
)
convert_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert_cli)


def source_of(name: str) -> str:
    return _SOURCE[name.split("_")[0]]


def run_cli(argv: List[str], capsys) -> dict:
    """Run the converter CLI in-process; the last line it prints is its JSON summary."""
    code = convert_cli.main(argv)
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    assert out, f"the CLI printed no summary (exit {code}): {captured.err.strip()}"
    summary = json.loads(out[-1])
    summary["exit_code"] = code
    return summary


def convert_fixture(name: str, tmp_path: Path, capsys, dtype=None) -> dict:
    fixture = R.load_fixture(name)
    src = save_torch_zip(R.checkpoint(fixture, dtype), tmp_path / f"{name}.pth")
    out = tmp_path / f"{name}.pdparams"
    summary = run_cli(["--src", source_of(name), str(src), str(out), "--json"], capsys)
    summary["output"] = out
    return summary


def our_outputs(
    model: paddle.nn.Layer, x: paddle.Tensor, wanted: List[str]
) -> Dict[str, np.ndarray]:
    """The arrays a fixture stores, computed by our model (names as in the fixtures' README)."""
    got: Dict[str, paddle.Tensor] = {}
    if "logits" in wanted:
        got["logits"] = model(x)[0]
    feats = [k for k in wanted if k.startswith("feat")]
    if feats:  # a backbone: features at strides 2 (STDC) or 4 (ResNet) ... 32, in order
        maps = model(x)
        by_stride = dict(zip((2, 4, 8, 16, 32)[-len(maps) :], maps))
        got.update({k: by_stride[int(k[4:])] for k in feats})
    if "db" in wanted:
        got["db"] = model.db(x)
        stages = model.sb(x)
        got.update(zip(("sb_s2", "sb_s3", "sb_s4", "sb_s5", "sb_ce"), stages))
    return {k: v.numpy() for k, v in got.items()}


def compare(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs reference {ref.shape}"
    rel = float(np.abs(ours - ref).max() / np.abs(ref).max())
    assert rel <= REL_TOL, f"{what}: relative max difference {rel:.3g} > {REL_TOL}"
    if what.endswith("logits"):
        agree = float((ours.argmax(1) == ref.argmax(1)).mean())
        assert agree >= ARGMAX_MIN, f"{what}: argmax agreement {agree:.4%}"


def check_against_reference(name: str, summary: dict) -> None:
    assert summary["exit_code"] == 0, summary
    assert summary["exact"], f"{name}: the converter does not call this conversion exact"
    fixture = R.load_fixture(name)
    paddle.seed(0)
    model = paddle_stdc.create_model(summary["model"], **summary["model_kwargs"])
    report = load_state(model, paddle.load(str(summary["output"])), strict=True)
    assert report.exact
    model.eval()
    for tag, arrays in R.outputs(fixture).items():
        wanted = [k for k in arrays if k != "input"]
        with paddle.no_grad():
            ours = our_outputs(model, paddle.to_tensor(arrays["input"]), wanted)
        for key in wanted:
            compare(ours[key], arrays[key], f"{name} {tag} {key}")


@pytest.mark.slow
@pytest.mark.parametrize("name", FIXTURES)
def test_conversion_reproduces_the_original_implementation(name, tmp_path, capsys):
    summary = convert_fixture(name, tmp_path, capsys)
    check_against_reference(name, summary)


def test_the_rule_regenerates_the_stored_inputs():
    """Our re-implementation of the rule gives the inputs the original code was run on."""
    for name in FIXTURES:
        for tag, arrays in R.outputs(R.load_fixture(name)).items():
            h, w = map(int, tag.split("x"))
            np.testing.assert_array_equal(R.rule_input(h, w), arrays["input"], err_msg=name)


def test_fixtures_have_negative_bn_weights():
    """Half the BN weights are negative, so a converter that drops InPlaceABN's |w| fails."""
    fixture = R.load_fixture("official_stdc1_seg")
    sd = R.state_dict(fixture)
    weights = np.concatenate(
        [sd[k].ravel() for k, _, _, role, _ in fixture["keys"] if role == "bn_weight"]
    )
    assert 0.3 < float((weights < 0).mean()) < 0.7


@pytest.mark.slow
def test_half_precision_release_converts_to_the_same_network(tmp_path, capsys):
    """sssegmentation's FP16 release stores float16 tensors. Its conversion is the float32 of
    exactly those values under the same names and options as the float32 file, whose network
    the test above proves equal to sssegmentation's; only the weights' fp16 rounding remains."""
    name = "sssegmentation_bisenetv2"
    (tmp_path / "fp32").mkdir()
    (tmp_path / "fp16").mkdir()
    full = convert_fixture(name, tmp_path / "fp32", capsys)
    half = convert_fixture(name, tmp_path / "fp16", capsys, dtype="float16")
    assert half["exact"] and (half["model"], half["model_kwargs"]) == (
        full["model"],
        full["model_kwargs"],
    )
    state32 = paddle.load(str(full["output"]))
    state16 = paddle.load(str(half["output"]))
    assert set(state16) == set(state32)
    for key, value in state32.items():
        value = value.numpy()
        want = value.astype(np.float16).astype(np.float32) if value.dtype == np.float32 else value
        np.testing.assert_array_equal(state16[key].numpy(), want, err_msg=key)


def report() -> List[str]:
    """Markdown rows: every fixture and size, relative max difference and argmax agreement of
    its worst array (``python -m tests.test_reference_parity``)."""
    import contextlib
    import io
    import tempfile

    rows = ["| fixture | size | strict | model | worst array | rel. max diff | argmax |",
            "|---|---|---|---|---|---:|---:|"]  # fmt: skip
    for name in FIXTURES:
        with tempfile.TemporaryDirectory() as tmp:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                code = convert_cli.main(
                    ["--src", source_of(name), str(save_torch_zip(
                        R.checkpoint(R.load_fixture(name)), Path(tmp) / "src.pth")),
                     str(Path(tmp) / "out.pdparams"), "--json"]
                )  # fmt: skip
            summary = json.loads(buf.getvalue().strip().splitlines()[-1])
            strict = "accepted" if code == 0 else f"refused ({summary['unmatched']} unmatched)"
            if code != 0:
                rows.append(f"| {name} | - | {strict} | {summary['model']} | - | - | - |")
                continue
            paddle.seed(0)
            model = paddle_stdc.create_model(summary["model"], **summary["model_kwargs"])
            load_state(model, paddle.load(str(Path(tmp) / "out.pdparams")), strict=True)
            model.eval()
            for tag, arrays in R.outputs(R.load_fixture(name)).items():
                wanted = [k for k in arrays if k != "input"]
                with paddle.no_grad():
                    ours = our_outputs(model, paddle.to_tensor(arrays["input"]), wanted)
                rel = {
                    k: float(np.abs(ours[k] - arrays[k]).max() / np.abs(arrays[k]).max())
                    for k in wanted
                }
                worst = max(rel, key=rel.get)
                agree = (
                    f"{(ours['logits'].argmax(1) == arrays['logits'].argmax(1)).mean():.4%}"
                    if "logits" in wanted
                    else "-"
                )
                rows.append(
                    f"| {name} | {tag} | {strict} | {summary['model']} | {worst} "
                    f"| {rel[worst]:.2e} | {agree} |"
                )
    return rows


if __name__ == "__main__":
    print("\n".join(report()))
