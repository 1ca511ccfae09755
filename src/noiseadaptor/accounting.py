"""Synaptic operations and energy of a simulated network.

A synaptic operation (SOP) is one nonzero input reaching one synapse of a conv or linear layer: for
an input element, its exact fan-out (border-aware for convolutions: an element near the edge reaches
fewer output positions than one in the middle). The layer that reads the analog input performs
multiply-accumulates (MACs) instead, every step. Inputs that went through average pooling are sparse
but not binary; they are counted the same way (on hardware the pool folds into the next layer).

Energy, by Horowitz (ISSCC 2014, 45 nm, 32-bit float): E_ANN = MACs * 4.6 pJ for the whole ANN,
E_SNN = MACs(analog layer, every step) * 4.6 pJ + SOPs * 0.9 pJ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

E_MAC_PJ = 4.6
E_AC_PJ = 0.9
_SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class EnergyModel:
    e_mac_pj: float = E_MAC_PJ
    e_ac_pj: float = E_AC_PJ

    def snn(self, macs: float, sops: float) -> float:
        return macs * self.e_mac_pj + sops * self.e_ac_pj

    def ann(self, macs: float) -> float:
        return macs * self.e_mac_pj


def fan_out(layer: nn.Module, input_shape: tuple[int, ...]) -> Tensor:
    """Number of synapses leaving each element of one input sample (shape `input_shape`, no batch)."""
    if isinstance(layer, nn.Linear):
        return torch.full(input_shape, float(layer.out_features))
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[layer.weight.dim() - 2]
    with torch.inference_mode(False), torch.enable_grad():
        probe = torch.ones((1, *input_shape), requires_grad=True)
        ones = torch.ones_like(layer.weight, device="cpu")
        conv(probe, ones, None, layer.stride, _padding(layer), layer.dilation, layer.groups).sum().backward()
    return probe.grad[0].detach()


def macs_per_sample(layer: nn.Module, output_shape: tuple[int, ...]) -> int:
    """Dense multiply-accumulates of one sample through a conv/linear layer: inputs per output times
    outputs."""
    per_output = layer.in_features if isinstance(layer, nn.Linear) else layer.weight[0].numel()
    return per_output * math.prod(output_shape)


def _padding(layer: nn.Module):
    if isinstance(layer.padding, str) or layer.padding_mode == "zeros":
        return layer.padding
    return 0  # non-zero padding modes pad the input explicitly; counted as no-fan-out borders


class SynapticCounter:
    """Forward hooks on every conv/linear layer of a network, summing SOPs and MACs per time step.

    `start(x, steps)` before each counted call of the network (and `stop()` after): `x` is the analog input (a layer that reads it
    counts MACs, at every step) and `steps` the time steps the call runs (`SpikingNetwork.run`).
    `sops` and `macs` then hold the call's totals over the batch, one entry per step; `dense_macs`
    holds each layer's MACs per sample in the equivalent ANN.
    """

    def __init__(self, net: nn.Module):
        self.fan_outs: dict[str, Tensor] = {}
        self.dense_macs: dict[str, int] = {}
        self.analog_input: Tensor | None = None
        self.sops = self.macs = torch.zeros(1, dtype=torch.float64)
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in net.named_modules()
                         if isinstance(m, _SYNAPTIC)]

    def start(self, x: Tensor, steps: int) -> None:
        self.analog_input = x
        self.sops = torch.zeros(steps, dtype=torch.float64, device=x.device)
        self.macs = torch.zeros(steps, dtype=torch.float64, device=x.device)

    def _hook(self, name: str):
        def hook(module: nn.Module, args, output: Tensor) -> None:
            if self.analog_input is None:  # between start() and stop() only: not offset-spike pre-steps
                return
            x, steps = args[0], len(self.sops)
            if name not in self.dense_macs:
                self.dense_macs[name] = macs_per_sample(module, tuple(output.shape[1:]))
                self.fan_outs[name] = fan_out(module, tuple(x.shape[1:])).to(x.device, x.dtype)
            if x is self.analog_input:
                self.macs += self.dense_macs[name] * x.shape[0]
                return
            sops = (x != 0).to(x.dtype) * self.fan_outs[name]
            if x.shape[0] == steps * self.analog_input.shape[0]:  # steps stacked time-major
                self.sops += sops.view(steps, -1).sum(1)
            else:  # computed once for all steps (before the first neuron)
                self.sops += sops.sum()
        return hook

    def stop(self) -> None:
        self.analog_input = None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
