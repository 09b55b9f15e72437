"""paddle_stdc: a PaddlePaddle model zoo for real-time semantic segmentation.

Importing the package registers every model, backbone, loss and dataset into PaddleSeg's
component managers (replacing PaddleSeg's entries of the same name), so PaddleSeg-style
YAML configs build this project's Paddle-3-correct classes and its fast uint8 transforms.
"""

# _startup first (names are imported left to right): it records the environment before
# anything imports Paddle.
from paddle_stdc import _startup, losses, models  # noqa: F401  (registration side effects)
from paddle_stdc.data import datasets  # noqa: F401
from paddle_stdc.data import transforms as _transforms  # noqa: F401  (registers transforms)
from paddle_stdc.factory import create_model
from paddle_stdc.registry import list_models

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "__version__"]
