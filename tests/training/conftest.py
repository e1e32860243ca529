import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Two OpenMP threads on a busy 2-core machine spin against each other (100x slower steps).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
