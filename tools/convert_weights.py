"""Convert a reference implementation's PyTorch checkpoint to a paddle_stdc .pdparams file.

python tools/convert_weights.py --src stdc-official STDCNet813M_73.91.tar stdc1.pdparams
python tools/convert_weights.py --src mmseg stdc1_in1k-pre_...pth stdc1_seg.pdparams --json
python tools/convert_weights.py --src mmseg ckpt.pth out.pdparams --model bisenetv1_r18 --no-strict

PyTorch is not needed, and the checkpoint's pickle cannot run code: only tensors, dicts, lists
and plain values are rebuilt. The report lists every source key that was not placed, every
model key left unfilled and every shape mismatch; any of those makes the conversion fail (exit
code 1, nothing written) unless --no-strict is given. The report names the model and options
the weights are for: paddle_stdc.create_model(MODEL, **MODEL_KWARGS). With --json the last line
printed is one JSON object (model, model_kwargs, exact, counts, output).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import List, Optional

from paddle_stdc.convert import (
    SOURCES,
    ConversionError,
    ConversionReport,
    UnsupportedConversion,
    convert_checkpoint,
)
from paddle_stdc.utils.torch_pickle import TorchCheckpointError


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--src", required=True, choices=SOURCES, help="layout of the input file")
    p.add_argument("input", type=Path, help="PyTorch checkpoint (.pth / .pt / .tar)")
    p.add_argument("output", type=Path, help="where to write the .pdparams")
    p.add_argument(
        "--model", help="our model or backbone (default: guessed from the checkpoint's keys)"
    )
    p.add_argument(
        "--no-strict",
        dest="strict",
        action="store_false",
        help="write the converted tensors even if the report is not exact",
    )
    p.add_argument("--json", action="store_true", help="end with a one-line JSON summary")
    return p.parse_args(argv)


def json_summary(report: ConversionReport, output: Optional[Path]) -> str:
    """One line: what a script needs to build the model and trust the file."""
    return json.dumps({
        "source": report.source,
        "model": report.target,
        "model_kwargs": report.model_kwargs,
        "exact": report.ok,
        "converted": len(report.converted),
        "dropped": len(report.dropped),
        "unmatched": len(report.unmatched),
        "unfilled": len(report.unfilled),
        "mismatched": len(report.mismatched),
        "output": str(output) if output else None,
    })  # fmt: skip


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if not args.input.is_file():
        print(f"error: checkpoint {args.input} does not exist", file=sys.stderr)
        return 2
    try:
        state, report = convert_checkpoint(args.input, args.src, args.model, strict=args.strict)
    except ConversionError as err:
        print(err.report.summary(), file=sys.stderr)
        print("conversion is not exact; nothing written (use --no-strict to write anyway)",
              file=sys.stderr)  # fmt: skip
        if args.json:
            print(json_summary(err.report, None))
        return 1
    except (UnsupportedConversion, TorchCheckpointError, pickle.UnpicklingError, ValueError,
            OSError) as err:  # fmt: skip
        print(f"error: {args.input}: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    import paddle

    args.output.parent.mkdir(parents=True, exist_ok=True)
    paddle.save(state, str(args.output))
    print(f"wrote {len(state)} tensors for {report.model_call} to {args.output}")
    if args.json:
        print(json_summary(report, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
