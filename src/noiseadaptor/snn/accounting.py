"""Synaptic operations and energy of a simulated network (Noise Adaptor paper, Eq. 20).

A synaptic operation (SOP) is one spike event reaching one synapse: every spike (or negative spike) of
a neuron costs its fan-out, the number of synapses it reaches in the synaptic (conv/linear) layers that
read it. The fan-out is taken from the graph of the converted network, through everything that sits
between a neuron and those layers: pooling (a spike in a pool window reaches every synapse of each
pooled value it enters, so two spikes in one window count twice), flatten and reshapes, identity
shortcuts and additions, BatchNorm kept between layers (an affine map of each value, not a
connection), and border-aware convolution fan-out (an element near the edge reaches fewer output
positions than one in the middle).

A synaptic layer that is reached from the network input without passing a neuron (the first conv,
after any normalisation or reshaping of the image; or a layer fed by such a layer) reads analog values:
it performs its dense multiply-accumulates (MACs) at every step, and spikes that enter it are part of
those MACs.

Energy, by Horowitz (ISSCC 2014, 45 nm, 32-bit float): E_ANN = MACs * 4.6 pJ for the whole ANN,
E_SNN = MACs(analog layers, every step) * 4.6 pJ + SOPs * 0.9 pJ.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from .neurons import IFNeuron, SpikingNetwork

E_MAC_PJ = 4.6
E_AC_PJ = 0.9
_CONV_FUNCTIONS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_ANALOG = "<analog>"  # source tag of values computed from the network input without a neuron in between


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
    with torch.inference_mode(False), torch.enable_grad():
        probe = torch.ones((1, *input_shape), requires_grad=True)
        _connections(
            layer.weight,
            probe,
            stride=getattr(layer, "stride", 1),
            padding=_padding(layer),
            dilation=getattr(layer, "dilation", 1),
            groups=getattr(layer, "groups", 1),
        ).sum().backward()
    return probe.grad[0].detach()


def _connections(weight: Tensor, x: Tensor, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """The layer with all-ones weights and no bias: its gradient counts the synapses each input reaches."""
    ones = torch.ones(weight.shape, dtype=x.dtype, device=x.device)
    if weight.dim() == 2:
        return F.linear(x, ones)
    conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[weight.dim()]
    return conv(x, ones, None, stride, padding, dilation, groups)


def _padding(layer: nn.Module):
    if not isinstance(layer, nn.modules.conv._ConvNd):
        return 0
    if isinstance(layer.padding, str) or layer.padding_mode == "zeros":
        return layer.padding
    return 0  # non-zero padding modes pad the input explicitly; counted as no-fan-out borders


@dataclass
class SynapticMap:
    """What a network's graph says about its operations, per sample.

    fan_out[neuron]: synapses reached by one spike of each neuron (shaped like one sample of the
    neuron's output). analog_macs[layer]: dense MACs of each synaptic layer that reads analog values
    (paid every step). dense_macs[layer]: MACs of every synaptic layer in the equivalent ANN."""

    fan_out: dict[str, Tensor] = field(default_factory=dict)
    analog_macs: dict[str, int] = field(default_factory=dict)
    dense_macs: dict[str, int] = field(default_factory=dict)


def synaptic_map(net: fx.GraphModule, sample: Tensor) -> SynapticMap:
    """Trace `net` (a converted network's graph) on one input sample ``[1, ...]``: which synaptic layers
    read analog values, and the fan-out of every neuron through pooling, reshapes, additions and kept
    BatchNorm to the synaptic layers it feeds (see the module doc)."""
    if not isinstance(net, fx.GraphModule):
        raise TypeError(
            f"synaptic operations are counted on the fx graph of a network from convert(); got {type(net).__name__}"
        )
    with torch.inference_mode(False), torch.enable_grad():
        probe = _Connectivity(net)
        probe.run(torch.ones(sample.shape, dtype=torch.float32, device=sample.device))
        found = probe.result
        names = list(probe.leaves)
        if names and probe.loss:
            grads = torch.autograd.grad(sum(probe.loss), [probe.leaves[n] for n in names], allow_unused=True)
        else:
            grads = [None] * len(names)
        for name, grad in zip(names, grads):
            leaf = probe.leaves[name]
            found.fan_out[name] = (torch.zeros_like(leaf) if grad is None else grad).detach()[0]
    return found


class _Connectivity(fx.Interpreter):
    """Runs the graph with every synaptic layer's weights set to one (no bias), average pools turned
    into sum pools, BatchNorm into the identity and means into sums, so that the gradient of the
    synaptic layers' summed outputs with respect to a neuron's output counts the synapses each of its
    spikes reaches. Neuron outputs are fresh leaves (gradients stop there), synaptic outputs are
    detached (a layer's fan-out ends at the next synaptic layer), and every value carries the set of
    sources it depends on: the analog input, or neurons."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.sources: dict[fx.Node, frozenset] = {}
        self.leaves: dict[str, Tensor] = {}
        self.loss: list[Tensor] = []
        self.result = SynapticMap()

    def run_node(self, n: fx.Node):
        if n.op == "placeholder":
            self.sources[n] = frozenset({_ANALOG})
            return super().run_node(n)
        self.sources[n] = frozenset().union(*(self.sources.get(a, frozenset()) for a in n.all_input_nodes))
        if n.op not in ("call_module", "call_function", "call_method"):
            return super().run_node(n)
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        if n.op == "call_module":
            return self._module(n, self.fetch_attr(n.target), args, kwargs)
        if n.op == "call_function":
            return self._function(n, args, kwargs)
        if n.target == "mean":
            return args[0].sum(*args[1:], **kwargs)
        return getattr(args[0], n.target)(*args[1:], **kwargs)

    def _module(self, n: fx.Node, m: nn.Module, args, kwargs):
        x = args[0]
        if isinstance(m, IFNeuron):
            leaf = torch.ones_like(x).requires_grad_()
            self.leaves[n.target] = leaf
            self.sources[n] = frozenset({n.target})
            return leaf
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            out = _connections(
                m.weight, x, getattr(m, "stride", 1), _padding(m), getattr(m, "dilation", 1), getattr(m, "groups", 1)
            )
            return self._synapse(n, n.target, m.weight, out)
        if isinstance(m, _BATCH_NORMS):
            return x
        if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
            return _sum_pool(x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)
        if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
            return _adaptive_sum_pool(x, m.output_size)
        return m(*args, **kwargs)

    def _function(self, n: fx.Node, args, kwargs):
        f = n.target
        if f is F.linear or f in _CONV_FUNCTIONS:
            weight = kwargs.get("weight", args[1] if len(args) > 1 else None)
            options = {k: v for k, v in kwargs.items() if k in ("stride", "padding", "dilation", "groups")}
            positional = dict(zip(("stride", "padding", "dilation", "groups"), args[3:]))
            out = _connections(weight, args[0], **{**positional, **options})
            return self._synapse(n, n.name, weight, out)
        if f in (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d):
            names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
            given = {**dict(zip(names, args[1:])), **kwargs}
            kernel = given["kernel_size"]
            return _sum_pool(
                args[0],
                kernel,
                given.get("stride") or kernel,
                given.get("padding", 0),
                given.get("ceil_mode", False),
                given.get("count_include_pad", True),
            )
        if f in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d):
            return _adaptive_sum_pool(args[0], kwargs.get("output_size", args[1] if len(args) > 1 else None))
        if f is torch.mean:
            return torch.sum(*args, **kwargs)
        if f in (operator.mul, operator.truediv, torch.mul) and sum(isinstance(a, Tensor) for a in args) == 1:
            return next(a for a in args if isinstance(a, Tensor))  # scaling a value keeps its connections
        return f(*args, **kwargs)

    def _synapse(self, n: fx.Node, name: str, weight: Tensor, out: Tensor) -> Tensor:
        per_output = weight[0].numel()
        self.result.dense_macs[name] = per_output * out[0].numel()
        if _ANALOG in self.sources[n]:
            self.result.analog_macs[name] = self.result.dense_macs[name]
        else:
            self.loss.append(out.sum())
        self.sources[n] = frozenset({_ANALOG})  # a layer's output is an analog current
        return out.detach()


def _sum_pool(x: Tensor, kernel, stride, padding, ceil_mode: bool, count_include_pad: bool) -> Tensor:
    """Average pooling without the division: each output is the sum of its window."""
    dims = x.dim() - 2 if x.dim() > 2 else 1
    if dims == 1:  # avg_pool1d has no divisor_override: as a 2-d pool of height 1
        k, st, pad = (v[0] if isinstance(v, (tuple, list)) else v for v in (kernel, stride or kernel, padding))
        out = F.avg_pool2d(x.unsqueeze(-2), (1, k), (1, st), (0, pad), ceil_mode, count_include_pad, divisor_override=1)
        return out.squeeze(-2)
    pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
    return pool(x, kernel, stride or kernel, padding, ceil_mode, count_include_pad, divisor_override=1)


def _adaptive_sum_pool(x: Tensor, output_size) -> Tensor:
    """Adaptive average pooling times each output's region size (torch's regions: [floor(i*n/m),
    ceil((i+1)*n/m)) per dimension)."""
    dims = len(output_size) if isinstance(output_size, (tuple, list)) else max(x.dim() - 2, 1)
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * dims
    sizes = [x.shape[-dims + d] if s is None else s for d, s in enumerate(sizes)]
    pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[dims]
    out = pool(x, sizes)
    area = torch.ones((), dtype=x.dtype, device=x.device)
    for d, m in enumerate(sizes):
        n = x.shape[-dims + d]
        region = torch.tensor(
            [math.ceil((i + 1) * n / m) - (i * n) // m for i in range(m)], dtype=x.dtype, device=x.device
        )
        area = area.unsqueeze(-1) * region
    return out * area


class SynapticCounter:
    """Counts the SOPs and MACs of a converted network per time step, with forward hooks on its neurons.

    `start(x, steps)` before each counted call of the network (`SpikingNetwork.run`) and `stop()` after:
    `sops` and `macs` then hold the call's totals over the batch, one entry per step. `start(x)` (no
    steps) sums every pass until `stop()` into one entry, however many steps and partial passes they run
    (the pre-steps of COS and SRP); its MACs are the analog layers' per step run, counted where the first
    neuron layer is reached. Steps run outside start/stop are not counted. The graph is traced once, on
    the first batch."""

    def __init__(self, snn: SpikingNetwork):
        self.snn = snn
        self.map: SynapticMap | None = None
        self.sops = self.macs = torch.zeros(1, dtype=torch.float64)
        self.per_sample: Tensor | None = None  # [steps, batch] SOPs of each image, when start(per_sample=True)
        self.batch: int | None = None
        self._handles = [n.register_forward_hook(self._hook(name)) for name, n in snn.neurons()]

    @property
    def analog_macs(self) -> float:
        """MACs per image and step of the layers that read analog values (0 before the first batch)."""
        return 0.0 if self.map is None else float(sum(self.map.analog_macs.values()))

    @property
    def dense_macs(self) -> dict[str, int]:
        return {} if self.map is None else self.map.dense_macs

    def start(self, x: Tensor, steps: int | None = None, per_sample: bool = False) -> None:
        if self.map is None:
            self.map = synaptic_map(self.snn.net, x[:1])
            self._fan_out = {k: v.reshape(-1).to(x.device, torch.float32) for k, v in self.map.fan_out.items()}
            self._first = next(name for name, _ in self.snn.neurons())
            self._analog = float(sum(self.map.analog_macs.values()))  # per sample and step
        self.batch, self._summed = x.shape[0], steps is None
        per_step = 0.0 if self._summed else self._analog * x.shape[0]  # summed: counted as the steps run
        self.sops = torch.zeros(steps or 1, dtype=torch.float64, device=x.device)
        self.macs = torch.full((steps or 1,), per_step, dtype=torch.float64, device=x.device)
        shape = (steps or 1, x.shape[0])
        self.per_sample = torch.zeros(shape, dtype=torch.float64, device=x.device) if per_sample else None

    def _hook(self, name: str):
        def hook(module: nn.Module, args, output: Tensor) -> None:
            if self.batch is None:  # between start() and stop() only
                return
            if self._summed and name == self._first:  # one pass of the analog layers per step it runs
                self.macs += self._analog * output.shape[0]
            fan = self._fan_out.get(name)
            if fan is None:
                return
            steps = len(self.sops)
            events = (output != 0).to(torch.float32).view(steps, -1, fan.numel())
            each = torch.matmul(events, fan).double()  # [steps, batch]
            self.sops += each.sum(1)
            if self.per_sample is not None:
                self.per_sample += each

        return hook

    def stop(self) -> None:
        self.batch = None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
