"""Generated README blocks: a table between two marker comments, rewritten in place.

The model card, model-zoo, benchmark and pipeline tables are all generated; one function
replaces a block so that every generator (and its freshness test) behaves the same.
"""

from __future__ import annotations

from pathlib import Path


def replace_block(text: str, begin: str, end: str, block: str) -> str:
    """``text`` with the span from ``begin`` to ``end`` (markers included) replaced by ``block``.

    ``block`` carries the markers itself, so the result can be regenerated again.
    """
    b, e = text.find(begin), text.find(end)
    if b < 0 or e < 0:
        raise ValueError(f"README has no {begin} ... {end} markers")
    return text[:b] + block + text[e + len(end) :]


def write_block(readme: Path, begin: str, end: str, block: str) -> None:
    """Rewrite the marked block of the file ``readme``."""
    readme.write_text(replace_block(readme.read_text(), begin, end, block))
