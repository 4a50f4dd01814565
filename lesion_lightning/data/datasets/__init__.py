"""The dataset registry: one module per dataset, each registering one `DatasetSpec` on import.

Adding a dataset is one new module here (see docs/datasets.md): it is found and registered when this
package is imported. Modules whose names start with an underscore hold shared code, not datasets.
"""

import importlib
import pkgutil

from lesion_lightning.data.datasets.registry import (
    SUBSETS,
    Archive,
    DatasetSpec,
    get_dataset_spec,
    list_datasets,
    register_dataset,
)

# The built-in datasets in the order they are listed; any other module of this package follows.
_BUILT_IN = ("isic2018", "isic2017", "ham10000", "ph2", "folder")
for _name in (*_BUILT_IN, *sorted(m.name for m in pkgutil.iter_modules(__path__))):
    if not _name.startswith("_") and _name != "registry":
        importlib.import_module(f"{__name__}.{_name}")

__all__ = ["SUBSETS", "Archive", "DatasetSpec", "get_dataset_spec", "list_datasets", "register_dataset"]
