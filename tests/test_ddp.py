"""DDP on CPU (gloo, 2 processes)."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from noiseadaptor import evaluate, fit
from noiseadaptor.data import digits
from noiseadaptor.models import create_model


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model("small-cnn", num_classes=10, in_channels=1, width=8)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from noiseadaptor.distributed import init_from_env

    init_from_env("cpu")
    splits = digits()
    train, test = splits.loaders(32, seed=0)
    model = _model()
    before = evaluate(model, test)
    fit(model, train, 2, progress=False)
    after = evaluate(model, test)
    if rank == 0:
        torch.save({"before": before, "after": after}, out)
    torch.distributed.destroy_process_group()


def test_ddp_on_cpu_matches_one_process(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ddp = torch.load(out)
    splits = digits()
    train, test = splits.loaders(64, seed=0)  # one process, the same global batch
    model = _model()
    # evaluation shards without padding: 359 test images, each counted once -> identical accuracy
    assert ddp["before"] == evaluate(model, test)
    fit(model, train, 2, progress=False)
    assert ddp["after"] == pytest.approx(evaluate(model, test), abs=0.05)
