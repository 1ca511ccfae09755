"""Shared fixtures."""

import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from noiseadaptor.ann.models import create_model


@pytest.fixture
def small_cnn():
    """A factory of the small CNN on the 8x8 digits, seeded: small_cnn(seed=0)."""

    def make(seed: int = 0, width: int = 8):
        torch.manual_seed(seed)
        return create_model("small-cnn", num_classes=10, in_channels=1, width=width)

    return make


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from noiseadaptor.io.files import exclusive

    with exclusive(sys.argv[1]):
        print("holding", flush=True)
        time.sleep(300)
    """
)


@pytest.fixture
def hold_lock():
    """hold_lock(path): another process that holds `path`'s lock (noiseadaptor.io.files.exclusive) until
    killed with SIGKILL (kill(holder), or at the end of the test)."""
    holders = []

    def hold(path):
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "holding"
        holders.append(holder)
        return holder

    yield hold
    for holder in holders:
        if holder.poll() is None:
            holder.send_signal(signal.SIGKILL)
        holder.wait()
