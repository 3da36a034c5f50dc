import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: on a shared 2-core machine a second intra-op thread only spins (measured 10-50x slower).

    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
