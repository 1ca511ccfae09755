"""Multi-process helpers for torchrun + DistributedDataParallel (no launcher of our own).

``torchrun --nproc-per-node=8 -m noiseadaptor.cli train ...`` sets RANK/WORLD_SIZE/LOCAL_RANK;
`init_from_env` starts the process group (nccl on GPUs, gloo on CPUs) and picks this process's device.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: str | None = None) -> torch.device:
    """Start the process group when launched by torchrun; return the device this process should use."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not is_distributed():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        dist.init_process_group("nccl" if use_cuda else "gloo")
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cpu")
    return check_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def check_device(device: str | torch.device, name: str = "--device") -> torch.device:
    """The device, or a ValueError naming `name` (the flag or argument) and saying what to give when it
    does not exist here."""
    try:
        found = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"{name} {device}: not a device name ({err}); use cpu, cuda or cuda:N") from None
    if found.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {device}: this machine has no CUDA GPU (torch sees none); use cpu")
        if found.index is not None and found.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {device}: only {torch.cuda.device_count()} CUDA devices here")
    elif found.type == "meta":
        raise ValueError(f"{name} {device}: a meta tensor holds no values, so nothing can be trained or measured "
                         "on it; use cpu or cuda")  # fmt: skip
    elif found.type in ("mps", "xpu"):
        backend = getattr(torch.backends, found.type, None) if found.type == "mps" else getattr(torch, "xpu", None)
        if backend is None or not backend.is_available():
            raise ValueError(f"{name} {device}: this torch build or machine has no {found.type} device; use cpu"
                             " or cuda")  # fmt: skip
    elif found.type != "cpu":
        raise ValueError(f"{name} {device}: unsupported device type {found.type}; use cpu or cuda")
    return found


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes (in place, and returned); a no-op in a single process."""
    if is_distributed():
        on = tensor.device
        if dist.get_backend() == "nccl" and on.type != "cuda":
            tensor.copy_(_reduce(tensor.cuda()).to(on))
        else:
            _reduce(tensor)
    return tensor


def broadcast_state(module: torch.nn.Module) -> None:
    """Give every process rank 0's parameters and buffers (in place); a no-op in a single process.

    DistributedDataParallel keeps parameters equal, but each process updates its BatchNorm running
    statistics on its own shard after DDP's broadcast at the start of the forward pass: without this,
    every process would evaluate a slightly different network and the accuracy reported under
    torchrun would not be that of the checkpoint rank 0 saves.
    """
    if not is_distributed():
        return
    nccl = dist.get_backend() == "nccl"
    for tensor in [*module.parameters(), *module.buffers()]:
        data = tensor.data
        if nccl and data.device.type != "cuda":
            moved = data.cuda()
            dist.broadcast(moved, src=0)
            data.copy_(moved.to(data.device))
        else:
            dist.broadcast(data, src=0)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _reduce(tensor: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class ShardedEvalSampler(Sampler[int]):
    """Process r of w takes samples r, r+w, r+2w, ...: every sample exactly once over all processes.

    torch's DistributedSampler pads the last shard with repeated samples so that every process gets
    the same count; evaluating with it counts those duplicates twice (a known bug in peers' scripts).
    """

    def __init__(self, dataset):
        self.n, self.rank, self.world = len(dataset), rank(), world_size()

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))
