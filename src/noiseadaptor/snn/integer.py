"""Integer deployment: a converted network in which every number an integer chip holds is an integer.

How it works: docs/internals.md, "Integer networks"."""

from __future__ import annotations

import copy
import math

import torch
from torch import fx, nn

from ..checks import positive_int
from .graph import ADDS, PASS_THROUGH, POOLS, pool_geometry, shapes, traced
from .neurons import IFNeuron, SpikingNetwork

SUBSTEPS = 16  # a neuron layer's unit: this fraction of the finest weight step into it


MAX_WEIGHT_BITS = 16
"""The widest weight grid asked for; whether a network's integers (k times its layer's multiple, biases
and thresholds in units) stay below 2^24, where float32 holds them exactly, is checked layer by layer."""
EXACT = 2**24


def integer_network(snn: SpikingNetwork, bits: int, sample: torch.Tensor) -> tuple[SpikingNetwork, dict[str, float]]:
    """A copy of `snn` on B-bit integer weights (one integer multiplier per layer) and integer biases,
    thresholds and pre-charges, one unit per neuron layer (module docstring); `sample` is one input batch
    (it fixes the pools' windows). Returns (network, {neuron name or "output": unit})."""

    positive_int(bits, "bits")
    if not 2 <= bits <= MAX_WEIGHT_BITS:
        raise ValueError(
            f"weight bits must be 2 to {MAX_WEIGHT_BITS}, got {bits}: the network is held (and NIR written) in "
            "float32, whose integers are exact only below 2^24"
        )
    if any(n.negative_spikes or n.output_mask is not None or n.threshold.numel() != 1 for _, n in snn.neurons()):
        raise ValueError(
            "integer_network: negative spikes, SRP masks and per-neuron thresholds are not integer-deployable"
        )
    net = copy.deepcopy(snn)
    net.net = gm = traced(net.net)
    layers = _Layers(gm, shapes(gm, sample), 2 ** (bits - 1) - 1, bits)
    for node in gm.graph.nodes:
        layers.visit(node)
    return net, layers.units


class _Layers:
    """One pass in graph order. Per value: `worth`, what one unit of it is worth in our units, for spikes
    (and the analog input); `feeds`, for currents (Conv/Linear outputs and their sums), the weighted
    layers and shortcut spikes summed into it. A neuron or the output settles its unit from its feeds."""

    def __init__(self, gm: fx.GraphModule, sizes: dict, levels: int, bits: int):
        self.gm, self.sizes, self.levels, self.bits = gm, sizes, levels, bits
        self.worth: dict[fx.Node, float] = {}
        self.analog: set[fx.Node] = set()
        self.feeds: dict[fx.Node, tuple[list[tuple[nn.Module, float]], list[float]]] = {}
        self.units: dict[str, float] = {}

    def visit(self, node: fx.Node) -> None:
        x = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        module = self.gm.get_submodule(node.target) if node.op == "call_module" else None
        if node.op == "placeholder":
            self.worth[node] = 1.0
            self.analog.add(node)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            self.feeds[node] = ([(module, self._spikes(x, node))], [])
            self.analog.update([node] if x in self.analog else [])
        elif isinstance(module, POOLS):
            (kh, kw), _, _ = pool_geometry(node, module, self.sizes[x], self.sizes[node])
            self.worth[node] = self._spikes(x, node) / (kh * kw)
            self.analog.update([node] if x in self.analog else [])
        elif isinstance(module, (nn.Flatten, *PASS_THROUGH)) or node.target in (torch.flatten, "flatten"):
            for table in (self.worth, self.feeds):
                if x in table:
                    table[node] = table[x]
            self.analog.update([node] if x in self.analog else [])
        elif node.op == "call_function" and node.target in ADDS:
            weighted, shortcuts = [], []
            for term in node.args:
                if term in self.feeds:
                    weighted += self.feeds[term][0]
                    shortcuts += self.feeds[term][1]
                else:
                    shortcuts.append(self._spikes(term, node))
            self.feeds[node] = (weighted, shortcuts)
            self.analog.update([node] if any(t in self.analog for t in node.args) else [])
        elif isinstance(module, IFNeuron):
            unit = self._settle(x, node, float(module.threshold))
            threshold = max(1, round(float(module.threshold) / unit))
            _exact(threshold, f"the threshold of {node.target}", self.bits)
            start = torch.round(module.initial_membrane * module.threshold / unit)
            module.headroom = 0.0 if x in self.analog else 0.5
            module.threshold.fill_(threshold * unit)
            module.initial_membrane = (start + module.headroom) / threshold
            module.unit = self.units[node.target] = unit
            self.worth[node] = float(module.threshold)
        elif node.op == "output":
            if x in self.feeds:
                self.units["output"] = self._settle(x, node, 1.0)
        else:
            raise TypeError(f"integer_network: cannot place node '{node.name}' ({node.op} {node.target}) on a grid")

    def _spikes(self, x, node: fx.Node) -> float:
        if x not in self.worth:
            raise TypeError(f"integer_network: node '{node.name}' takes a current, not spikes (no neuron between)")
        return self.worth[x]

    def _settle(self, x: fx.Node, node: fx.Node, scale: float) -> float:
        """The unit of the layer summed into `x`, and its weights and biases on their grids; `scale` (the
        neuron's threshold, 1 for the output) sets it where every weight into it is zero."""
        weighted, shortcuts = self.feeds.get(x, ([], []))
        if not weighted or len(shortcuts) > 1:
            raise TypeError(
                f"integer_network: node '{node.name}' needs a Conv/Linear before it and at most one shortcut"
            )
        steps = [float(m.weight.detach().abs().max()) * g / self.levels for m, g in weighted]  # each one's finest
        unit = min([s for s in steps if s > 0] or [scale / self.levels]) / SUBSTEPS
        if x in self.analog:  # a power of two: our float sums are then the file's times 2^e, exactly
            unit = 2.0 ** math.floor(math.log2(unit))
        if shortcuts:  # each spike it brings is a whole number of units
            unit = shortcuts[0] / math.ceil(shortcuts[0] / unit)
        for (m, g), finest in zip(weighted, steps):
            if hasattr(m, "unit"):
                raise TypeError(f"integer_network: layer {type(m).__name__} is used twice; it would need two grids")
            multiple = max(1, math.ceil(finest / unit * (1 - 1e-6)))  # whole units, never finer than fits
            step = multiple * unit / g
            k = (m.weight.data / step).round_().clamp_(-self.levels, self.levels)
            _exact(
                float(k.abs().max()) * multiple,
                f"a weight into {node.name} (k times its multiple {multiple})",
                self.bits,
            )
            m.weight.data = k.mul_(step)
            if m.bias is not None:
                m.bias.data = (m.bias.data / unit).round_()
                _exact(float(m.bias.data.abs().max()), f"a bias into {node.name}", self.bits)
                m.bias.data.mul_(unit)
            m.unit, m.weight_scale, m.weight_bits = unit, multiple, self.bits
        return unit


def _exact(integer: float, what: str, bits: int) -> None:
    if abs(integer) >= EXACT:
        raise ValueError(
            f"integer_network at {bits} bits: {what} is {integer:.0f} units, past 2^24, where float32 (the network "
            "and its NIR file) no longer holds integers exactly; use fewer weight bits"
        )
