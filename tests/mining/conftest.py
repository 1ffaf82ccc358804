import pytest
import ray


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for the module, unless one is already running."""
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    if started:
        ray.shutdown()
