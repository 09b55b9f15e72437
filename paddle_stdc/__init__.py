"""paddle_stdc: a PaddlePaddle model zoo for real-time semantic segmentation.

Importing the package registers every model, backbone, loss and dataset into PaddleSeg's
component managers (replacing PaddleSeg's entries of the same name), so PaddleSeg-style
YAML configs build this project's Paddle-3-correct classes and its fast uint8 transforms.
"""

# _startup first: it records the environment (OMP_NUM_THREADS) before anything imports Paddle.
from paddle_stdc import _startup  # noqa: F401, I001
from paddle_stdc.utils import quiet

quiet.import_paddle()  # before anything else imports Paddle: its import-time notices held back

from paddle_stdc import losses, models  # noqa: E402, F401  (registration side effects)
from paddle_stdc.data import datasets  # noqa: E402, F401
from paddle_stdc.data import transforms as _transforms  # noqa: E402, F401  (registers them)
from paddle_stdc.factory import create_model  # noqa: E402
from paddle_stdc.registry import list_models  # noqa: E402

quiet.install()  # PaddleSeg's num_classes notice: validate_config checks num_classes

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "__version__"]
