"""Fixtures shared by the whole suite."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """One torch thread per test (restored afterwards).

    The small FFTs, stencils and networks of the tests gain nothing from threads, run
    reproducibly on one, and oversubscribed threads on a shared machine are many times
    slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
