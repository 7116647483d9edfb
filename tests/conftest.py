import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine threads thrash.
    Folders of tiny-model tests use it autouse from their conftest."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
