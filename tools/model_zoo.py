"""Regenerate the model-zoo tables of docs/model_zoo.md from paddle_stdc.zoo.PRETRAINED.

python tools/model_zoo.py            # rewrites docs/model_zoo.md in place
python tools/model_zoo.py --check    # exit 1 if docs/model_zoo.md is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from paddle_stdc.utils.readme import replace_block
from paddle_stdc.zoo import MARK_BEGIN, MARK_END, render_zoo_table

README = Path(__file__).resolve().parents[1] / "docs" / "model_zoo.md"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    text = README.read_text()
    updated = replace_block(text, MARK_BEGIN, MARK_END, render_zoo_table())
    if args.check:
        return 0 if updated == text else 1
    README.write_text(updated)
    print("docs/model_zoo.md model zoo updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
