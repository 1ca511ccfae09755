"""Shared fixtures."""

import pytest
import torch

from noiseadaptor.ann.models import create_model


@pytest.fixture
def small_cnn():
    """A factory of the small CNN on the 8x8 digits, seeded: small_cnn(seed=0)."""

    def make(seed: int = 0, width: int = 8):
        torch.manual_seed(seed)
        return create_model("small-cnn", num_classes=10, in_channels=1, width=width)

    return make
