"""Convert a reference implementation's PyTorch checkpoint to a paddle_stdc .pdparams file.

python tools/convert_weights.py --src stdc-official STDCNet813M_73.91.tar stdc1.pdparams
python tools/convert_weights.py --src mmseg stdc1_in1k-pre_...pth stdc1_seg.pdparams
python tools/convert_weights.py --src mmseg ckpt.pth out.pdparams --model bisenetv1_r18 --no-strict

PyTorch is not needed, and the checkpoint's pickle cannot run code: only tensors, dicts, lists
and plain values are rebuilt. The report lists every source key that was not placed, every
model key left unfilled and every shape mismatch; any of those makes the conversion fail (exit
code 1, nothing written) unless --no-strict is given. Sources: stdc-official (MichaelFan01/
STDC-Seg ImageNet and Cityscapes files), mmseg (mmsegmentation STDC, BiSeNetV1, ResNetV1c),
coincheung and sssegmentation (BiSeNetV2; their layout differs from ours, so these never
convert exactly — backbone initialisation only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from paddle_stdc.convert import BACKBONE_TARGETS, SOURCES, ConversionError, convert_checkpoint
from paddle_stdc.registry import list_models


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--src", required=True, choices=SOURCES, help="layout of the input file")
    p.add_argument("input", type=Path, help="PyTorch checkpoint (.pth / .pt / .tar)")
    p.add_argument("output", type=Path, help="where to write the .pdparams")
    p.add_argument(
        "--model",
        choices=list_models() + list(BACKBONE_TARGETS),
        help="our model or backbone (default: guessed from the checkpoint's keys)",
    )
    p.add_argument(
        "--no-strict",
        dest="strict",
        action="store_false",
        help="write the converted tensors even if the report is not exact",
    )
    args = p.parse_args(argv)
    try:
        state, report = convert_checkpoint(args.input, args.src, args.model, strict=args.strict)
    except ConversionError as err:
        print(err.report.summary(), file=sys.stderr)
        print("conversion is not exact; nothing written (use --no-strict to write anyway)",
              file=sys.stderr)  # fmt: skip
        return 1
    print(report.summary())
    import paddle

    args.output.parent.mkdir(parents=True, exist_ok=True)
    paddle.save(state, str(args.output))
    print(f"wrote {len(state)} tensors for {report.target} to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
