"""Learning-rate schedules of this project that ``paddle.optimizer.lr`` does not have.

Configs name them as ``lr_scheduler.type``; :class:`paddle_stdc.engine.config.Builder` builds
them and :mod:`paddle_stdc.engine.validate` checks their arguments, both through
:data:`OWN_SCHEDULERS` (Paddle's own module is left untouched).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import paddle


class ExpWarmupPolyDecay(paddle.optimizer.lr.LRScheduler):
    """The official STDC-Seg schedule (its ``optimizer_loss.py``): at step ``k``

    * ``k <= warmup_steps``: ``start_lr * (learning_rate / start_lr) ** (k / warmup_steps)``
      (geometric warm-up; PaddleSeg's ``warmup_iters`` is linear);
    * then ``learning_rate * (1 - (k - warmup_steps) / (decay_steps - warmup_steps)) ** power``.

    ``decay_steps`` is the run's length; the Builder fills in the config's ``iters``.
    """

    def __init__(
        self,
        learning_rate: float,
        decay_steps: Optional[int] = None,
        warmup_steps: int = 1000,
        start_lr: float = 1e-5,
        power: float = 0.9,
        last_epoch: int = -1,
    ) -> None:
        if decay_steps is None or decay_steps <= warmup_steps:
            raise ValueError(f"decay_steps must exceed warmup_steps, got {decay_steps}")
        if warmup_steps < 1 or start_lr <= 0:
            raise ValueError("warmup_steps must be >= 1 and start_lr > 0")
        self.decay_steps, self.warmup_steps = int(decay_steps), int(warmup_steps)
        self.start_lr, self.power = float(start_lr), float(power)
        self.warmup_factor = (learning_rate / start_lr) ** (1.0 / warmup_steps)
        super().__init__(learning_rate, last_epoch)

    def get_lr(self) -> float:
        k = self.last_epoch
        if k <= self.warmup_steps:
            return self.start_lr * self.warmup_factor**k
        done = (k - self.warmup_steps) / (self.decay_steps - self.warmup_steps)
        return self.base_lr * max(1.0 - done, 0.0) ** self.power


#: ``lr_scheduler.type`` name -> schedule class, beside ``paddle.optimizer.lr``'s.
OWN_SCHEDULERS: Dict[str, Type[paddle.optimizer.lr.LRScheduler]] = {
    ExpWarmupPolyDecay.__name__: ExpWarmupPolyDecay
}
