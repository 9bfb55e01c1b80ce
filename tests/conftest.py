import numpy as np
import pytest

from gpuseg._backend import gpu_unavailable_reason


def pytest_collection_modifyitems(config, items):
    reason = gpu_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"no GPU backend: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mosaic():
    """A 192x192 texture mosaic: image (uint8), ground truth, scribbles."""
    from gpuseg.samples import texture_mosaic

    return texture_mosaic((192, 192), seed=1)


@pytest.fixture(scope="session")
def small_model(mosaic):
    """A small trained CPU segmenter (sigma up to 4, 10 trees) on the mosaic."""
    from gpuseg import Segmenter

    image, _, scribbles = mosaic
    return Segmenter(backend="cpu", sigma_max=4, n_estimators=10, random_state=0).fit(image, scribbles)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
