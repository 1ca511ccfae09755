"""A fused CUDA kernel (Triton) for K steps of integrate-and-fire neurons.

The eager loop in `IFNeuron.forward` launches four small kernels per step; at CIFAR sizes a GPU is
then launch-bound. This kernel runs all K steps of a layer in one launch, the membrane in registers,
with the same float32 arithmetic (``u += x; o = u >= th ? th : 0; u -= o``), so its spikes are
bit-identical to the eager loop's. Used automatically for CUDA float32 tensors with one threshold
per layer when Triton is importable (NOISEADAPTOR_TRITON=0 turns it off); everything else takes
the eager path.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def integrate_and_fire(
        x_ptr, membrane_ptr, out_ptr, counts_ptr, threshold, n, steps, x_step_stride, BLOCK: tl.constexpr
    ):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inside = offsets < n
        u = tl.load(membrane_ptr + offsets, mask=inside, other=0.0)
        for k in range(steps):
            k64 = k.to(tl.int64)  # k * n can pass 2**31 for large layers and K
            u += tl.load(x_ptr + k64 * x_step_stride + offsets, mask=inside, other=0.0)
            fired = (u >= threshold) & inside
            o = tl.where(fired, threshold, 0.0)
            u -= o
            tl.store(out_ptr + k64 * n + offsets, o, mask=inside)
            # one partial count per block and step (atomics on one address would serialise the blocks)
            tl.store(counts_ptr + k * tl.num_programs(0) + tl.program_id(0), tl.sum(fired.to(tl.int32), axis=0))
        tl.store(membrane_ptr + offsets, u, mask=inside)

    return integrate_and_fire


def fused_available(x: Tensor, threshold: Tensor) -> bool:
    if not (x.is_cuda and x.dtype == torch.float32 and threshold.numel() == 1):
        return False
    if os.environ.get("NOISEADAPTOR_TRITON", "1") == "0":
        return False
    try:
        _kernel()
    except ImportError:
        return False
    return True


def integrate_and_fire(membrane: Tensor, x: Tensor, threshold: float, steps: int) -> tuple[Tensor, Tensor]:
    """Advance `membrane` ([B, ...], updated in place) by `steps` steps of input `x` ([steps*B, ...],
    or [B, ...] for the same input every step). Returns the outputs [steps, B, ...] and the spike
    count of each step."""
    n = membrane.numel()
    out = torch.empty((steps, *membrane.shape), dtype=membrane.dtype, device=membrane.device)
    block = 1024
    blocks = (n + block - 1) // block
    counts = torch.empty((steps, blocks), dtype=torch.int32, device=membrane.device)
    _kernel()[(blocks,)](x, membrane, out, counts, threshold, n, steps, 0 if x.numel() == n else n, BLOCK=block)
    return out, counts.sum(1)
