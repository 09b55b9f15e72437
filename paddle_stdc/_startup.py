"""The environment as this package first saw it, before ``import paddle`` changed it.

``import paddle`` writes ``OMP_NUM_THREADS=1`` into ``os.environ`` when it is unset, so a
value read after that import cannot tell the user's ``1`` from Paddle's. ``paddle_stdc``
imports this module before anything imports Paddle.
"""

from __future__ import annotations

import os
import sys

#: ``OMP_NUM_THREADS`` when ``paddle_stdc`` was first imported (None: unset).
OMP_NUM_THREADS = os.environ.get("OMP_NUM_THREADS")
#: Whether Paddle was imported before ``paddle_stdc`` (then :data:`OMP_NUM_THREADS` may be
#: Paddle's default rather than the user's).
PADDLE_IMPORTED_FIRST = "paddle" in sys.modules
