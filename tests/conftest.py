import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fresh, seeded generator per test, so that every failure reproduces."""
    return np.random.default_rng(20240611)
