import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared two-core machine: a second torch thread only contends (runs many times slower).
    The modules that train torch models use it (`pytestmark`); the previous count is restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
