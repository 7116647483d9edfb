"""CPU training keeps freed memory for the next step (glibc's mallopt) instead of faulting its
activations back in every step."""

import subprocess
import sys

import pytest

PROGRAM = """
import resource, torch
from vggnet.train.runtime import keep_freed_memory
assert keep_freed_memory()
def step():
    activations = [torch.ones(1 << 22) for _ in range(8)]  # 8 x 16 MiB, freed together
    del activations
for _ in range(3):  # the heap grows to the step's size once
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def faults_per_step() -> float:
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True)
    return float(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_activations_are_reused_not_faulted_back_in():
    # 128 MiB a step is 32,768 pages. Without keep_freed_memory glibc faults all of them back
    # in on most runs (its adaptive threshold sometimes settles, so that is not asserted)
    assert faults_per_step() < 100
