"""One torch thread for each test here (restored afterwards): the small networks of these
tests gain nothing from threads, and oversubscribed threads on a shared machine are slow."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
