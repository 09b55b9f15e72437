"""Model zoo: one module per architecture, backbones in ``backbones/``.

Importing this package registers every model variant and backbone (see
:mod:`paddle_stdc.registry`); :func:`paddle_stdc.create_model` builds them.
"""

from __future__ import annotations

from paddle_stdc.models import (  # noqa: F401  (registration)
    backbones,
    bisenetv1,
    bisenetv2,
    stdcseg,
)
