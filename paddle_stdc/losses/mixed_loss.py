"""A weighted sum of several losses on the same logit (PaddleSeg 2.8's ``MixedLoss``).

Config (as PaddleSeg)::

    loss:
      types:
        - type: MixedLoss
          losses: [{type: CrossEntropyLoss}, {type: OhemCrossEntropyLoss, min_kept: 1000}]
          coef: [0.8, 0.2]
      coef: [1]

PaddleSeg's class returns the list of weighted parts and its trainer splits it into separate
entries of the loss list; its trainer then fails on Paddle 3 with the other losses. Here
``forward`` returns the sum (a 0-D tensor, usable wherever a loss is), and
:meth:`MixedLoss.weighted_parts` gives the parts, which our trainer logs as PaddleSeg does
(one ``Train/loss_<i>`` per part). Sub-losses are sublayers, so the trainer's iteration hook
(``set_iteration``, e.g. ``DetailAggregateLoss(kernel_decay=True)``) reaches them too.
"""

from __future__ import annotations

import numbers
from typing import List, Sequence

import paddle
import paddle.nn as nn

from paddle_stdc.registry import register_loss


@register_loss
class MixedLoss(nn.Layer):
    """``sum_j coef[j] * losses[j](logit, label)``.

    Args:
        losses: built loss layers (the config's ``losses`` list of components).
        coef: one number per loss.
    """

    def __init__(self, losses: Sequence[nn.Layer], coef: Sequence[float]) -> None:
        super().__init__()
        if not isinstance(losses, (list, tuple)) or not losses:
            raise TypeError(f"MixedLoss: `losses` must be a non-empty list, got {losses!r}")
        if not isinstance(coef, (list, tuple)):
            raise TypeError(f"MixedLoss: `coef` must be a list of numbers, got {coef!r}")
        if len(losses) != len(coef):
            raise ValueError(
                f"MixedLoss: `losses` has {len(losses)} entries but `coef` {len(coef)}; "
                "give one coefficient per loss"
            )
        for j, loss in enumerate(losses):
            if not isinstance(loss, nn.Layer):
                raise TypeError(
                    f"MixedLoss: losses[{j}] must be a loss component (a dict with `type`), "
                    f"got {loss!r}"
                )
        for j, c in enumerate(coef):
            if isinstance(c, bool) or not isinstance(c, numbers.Real):
                raise TypeError(f"MixedLoss: coef[{j}] must be a number, got {c!r}")
        self.losses = nn.LayerList(list(losses))
        self.coef = [float(c) for c in coef]

    def weighted_parts(self, logit: paddle.Tensor, label: paddle.Tensor) -> List[paddle.Tensor]:
        """``[coef[j] * losses[j](logit, label)]``, 0-D tensors."""
        return [c * loss(logit, label) for loss, c in zip(self.losses, self.coef)]

    def forward(self, logit: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        """The weighted sum of :meth:`weighted_parts` (0-D)."""
        return paddle.add_n(self.weighted_parts(logit, label))
