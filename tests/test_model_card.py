"""The README model card is generated from the code and in sync; cost bounds hold."""

from __future__ import annotations

import pytest

import paddle_stdc
from paddle_stdc.model_card import MARK_BEGIN, gmacs, model_card_rows, render_table

from .conftest import ROOT


@pytest.mark.slow
def test_readme_model_card_is_up_to_date():
    rows = model_card_rows()
    assert {r.name for r in rows} == set(paddle_stdc.list_models())
    table = render_table(rows)
    readme = (ROOT / "docs" / "model_zoo.md").read_text()
    assert MARK_BEGIN in readme
    assert table in readme, "README model card is stale: run `python tools/model_card.py`"


@pytest.mark.slow
def test_bisenetv1_r18_is_output_stride_32_cheap():
    # PaddleSeg's output-stride-8 BiseNetV1-R18 costs about 113 GMACs at 512x1024.
    cost = gmacs(paddle_stdc.create_model("bisenetv1_r18", num_classes=19))
    assert 20 < cost < 40


def test_replace_block_rewrites_between_markers_and_names_missing_ones():
    from paddle_stdc.utils.readme import replace_block

    text = "intro\n<!-- a -->\nold\n<!-- b -->\noutro\n"
    assert replace_block(text, "<!-- a -->", "<!-- b -->", "<!-- a -->\nnew\n<!-- b -->") == (
        "intro\n<!-- a -->\nnew\n<!-- b -->\noutro\n"
    )
    with pytest.raises(ValueError, match="<!-- c -->"):
        replace_block(text, "<!-- c -->", "<!-- b -->", "x")
