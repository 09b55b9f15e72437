"""Regenerate the README model card (params, GMACs at 512x1024) from the registered models.

python tools/model_card.py            # rewrites docs/model_zoo.md in place
python tools/model_card.py --check    # exit 1 if docs/model_zoo.md is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from paddle_stdc.model_card import MARK_BEGIN, MARK_END, model_card_rows, render_table
from paddle_stdc.utils.readme import replace_block

README = Path(__file__).resolve().parents[1] / "docs" / "model_zoo.md"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    text = README.read_text()
    updated = replace_block(text, MARK_BEGIN, MARK_END, render_table(model_card_rows()))
    if args.check:
        sys.exit(0 if updated == text else 1)
    README.write_text(updated)
    print("docs/model_zoo.md model card updated")


if __name__ == "__main__":
    main()
