"""One preprocessing object per transform set: what inference and model cards say about normalisation is what the
training transforms do."""

from __future__ import annotations

import numpy as np
import pytest

from lesion_lightning.data.transforms import TRANSFORM_SET_NAMES, build_transforms
from lesion_lightning.inference import Preprocessing, normalisation_info


@pytest.mark.parametrize("transform_set", TRANSFORM_SET_NAMES)
def test_normalisation_info_describes_the_training_transform(transform_set):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    mask = np.zeros((32, 40), np.uint8)
    # evaluation transform of training (datamodule) and of inference (Predictor) at the image's own size
    train_eval = build_transforms(transform_set, (32, 40), train=False, seed=0)(image=image, mask=mask)["image"].numpy()
    inference = Preprocessing((32, 40), transform_set).transform()(image=image)["image"].numpy()
    np.testing.assert_array_equal(train_eval, inference)
    info = normalisation_info(transform_set)
    x = image.astype(np.float64).transpose(2, 0, 1)
    if info["kind"] == "min_max":
        expected = (x - x.min()) / (x.max() - x.min())
    else:
        mean, std = np.array(info["mean"])[:, None, None], np.array(info["std"])[:, None, None]
        expected = (x * info["scale"] - mean) / std
    np.testing.assert_allclose(train_eval, expected, atol=1e-5)
