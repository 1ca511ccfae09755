"""Image reconstruction (ASGL paper 004, Table 5), the task of ``--task reconstruct``: each image is its own
target (`noiseadaptor.data.reconstruction`), the network's output through a sigmoid is the reconstruction,
trained on the mean squared error and judged by PSNR and SSIM (torchmetrics: ``pip install torchmetrics``)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import module_device
from ..distributed import all_reduce_sum
from ..io.export import optional


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between the reconstruction sigmoid(output) and the target image in [0, 1]."""
    return F.mse_loss(torch.sigmoid(output), target)


@torch.no_grad()
def reconstruction_quality(
    model: nn.Module, data: Iterable, image_shape: tuple[int, int, int], device: torch.device | str | None = None
) -> dict:
    """Mean per-image PSNR (dB, data range 1), SSIM (torchmetrics' Gaussian 11x11 window) and MSE of
    `model`'s reconstructions (eval mode: a spiking network's true spikes) of (input, target) batches; under
    torchrun over every process's share (torchmetrics syncs PSNR and SSIM, the MSE is summed)."""

    optional("torchmetrics", 'pip install "noiseadaptor[metrics]"')
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    device = torch.device(device) if device is not None else module_device(model)
    psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3)).to(device)
    ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(device)
    was_training = model.training
    model.eval()
    mse = n = 0.0
    for x, target in data:
        x, target = x.to(device), target.to(device)
        out = torch.sigmoid(model(x))
        image, truth = out.reshape(-1, *image_shape), target.reshape(-1, *image_shape)
        psnr.update(image, truth)
        ssim.update(image, truth)
        mse += F.mse_loss(out, target, reduction="sum").item()
        n += target.numel()
    model.train(was_training)
    mse, n = all_reduce_sum(torch.tensor([mse, n], dtype=torch.float64, device=device)).tolist()  # torchrun
    return {"psnr": psnr.compute().item(), "ssim": ssim.compute().item(), "mse": mse / n}
