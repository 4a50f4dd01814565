"""Architectures (plain nn.Modules), built by name through `create_model`.

Each paper architecture lives in its own module; importing this package registers them all.
Models return raw logits: (B, 1, H, W) for sigmoid heads, (B, 2, H, W) for softmax heads.
"""

from lesion_lightning.models.registry import ModelSpec, create_model, get_model_spec, list_models, register_model

# Architecture modules register themselves on import; keep this list sorted.
from lesion_lightning.models import egeunet  # noqa: F401,E402
from lesion_lightning.models import lanet  # noqa: F401,E402
from lesion_lightning.models import malunet  # noqa: F401,E402
from lesion_lightning.models import medlitenet  # noqa: F401,E402
from lesion_lightning.models import nested_unet  # noqa: F401,E402
from lesion_lightning.models import scsonet  # noqa: F401,E402
from lesion_lightning.models import simple_unet  # noqa: F401,E402
from lesion_lightning.models import slsnet  # noqa: F401,E402
from lesion_lightning.models import smp_baselines  # noqa: F401,E402
from lesion_lightning.models import unet  # noqa: F401,E402
from lesion_lightning.models import unet3plus  # noqa: F401,E402
from lesion_lightning.models import unet_aksoy  # noqa: F401,E402

__all__ = ["ModelSpec", "create_model", "get_model_spec", "list_models", "register_model"]
