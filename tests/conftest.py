"""Test-wide settings.

One torch thread: small ops run faster on the 2-core CI machine, results are reproducible,
and torch's batched LU (never used by cutslots) is known to mis-pivot with several threads.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
