"""The converted network in other simulators, exactly: ``to_spikingjelly``, ``to_snntorch``, ``to_sinabs``,
``to_norse``.

How it works: docs/internals.md, "Other simulators"."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import Tensor, nn

from .io.export import optional
from .runconfig import load_run
from .snn.conversion import convert
from .snn.neurons import IFNeuron, SpikingNetwork


class ForeignNeuron(nn.Module):
    """One of our IF neurons as a simulator's neuron `cell` (subclasses say how to start and step it)."""

    def __init__(self, cell: nn.Module, neuron: IFNeuron):
        super().__init__()
        self.cell = cell
        self.register_buffer("threshold", neuron.threshold.detach().clone())
        self.register_buffer("start", (neuron.initial_membrane * neuron.threshold).detach().clone())
        self.fresh = True

    def reset(self) -> None:
        self.fresh = True

    def forward(self, x: Tensor) -> Tensor:
        if self.fresh:
            self.begin(x)
            self.fresh = False
        return self.step(x) * self.threshold

    def begin(self, x: Tensor) -> None:
        """Put the simulator's membrane at the pre-charge for a new sample of `x`'s shape."""
        raise NotImplementedError

    def step(self, x: Tensor) -> Tensor:
        """One step of the simulator's neuron on input current `x`; its 0/1 spikes."""
        raise NotImplementedError

    def precharge(self, x: Tensor) -> Tensor:
        return self.start.to(x.dtype).expand(x.shape[0], *x.shape[1:]).clone()


class ForeignNetwork(nn.Module):
    """Our layers with a simulator's neurons: ``net(x)`` is one time step, ``reset()`` starts a sample."""

    def __init__(self, net: nn.Module, simulator: str):
        super().__init__()
        self.net, self.simulator = net, simulator

    def neurons(self) -> list[tuple[str, ForeignNeuron]]:
        return [(name, m) for name, m in self.net.named_modules() if isinstance(m, ForeignNeuron)]

    def reset(self) -> None:
        for _, neuron in self.neurons():
            neuron.reset()

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _replaced(snn, make: type[ForeignNeuron], simulator: str) -> ForeignNetwork:
    snn = _network(snn)
    if any(n.negative_spikes or n.output_mask is not None for _, n in snn.neurons()):
        raise ValueError(
            f"to_{simulator}: negative spikes and SRP masks are our run-time corrections; convert without them"
        )
    net = copy.deepcopy(snn.net)
    for name, neuron in [(n, m) for n, m in net.named_modules() if isinstance(m, IFNeuron)]:
        parent, _, leaf = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, leaf, make(neuron))
    return ForeignNetwork(net.eval(), simulator)


def _network(source) -> SpikingNetwork:
    """A SpikingNetwork from a `convert` result or a checkpoint path of a quantized run."""
    if isinstance(source, SpikingNetwork):
        return source
    if isinstance(source, (str, Path)):
        run = load_run(source)
        if not run.config.method_info.converts:
            raise ValueError(f"{source} is a '{run.config.method}' run; a quantized one converts to an SNN")
        return convert(run.model.eval())
    raise TypeError(
        f"expected a SpikingNetwork (noiseadaptor.convert) or a checkpoint path, got {type(source).__name__}"
    )


def _scalar(t: Tensor) -> float | Tensor:
    return t.item() if t.numel() == 1 else t


# ---------------------------------------------------------------------------------------------------
# SpikingJelly


class _SpikingJellyNeuron(ForeignNeuron):
    def __init__(self, neuron: IFNeuron):
        from spikingjelly.activation_based.neuron import IFNode

        super().__init__(IFNode(v_threshold=_scalar(neuron.threshold), v_reset=None, step_mode="s"), neuron)
        self.cell.set_reset_value("v", _scalar(self.start))  # SpikingJelly's own reset_net restores it

    def begin(self, x: Tensor) -> None:
        self.cell.reset()

    def step(self, x: Tensor) -> Tensor:
        return self.cell(x)


def to_spikingjelly(snn) -> ForeignNetwork:
    """The network with SpikingJelly 2.0 ``IFNode``s (subtractive reset, pre-charged membrane)."""
    optional("spikingjelly", 'pip install "noiseadaptor[interop]"')
    return _replaced(snn, _SpikingJellyNeuron, "spikingjelly")


# ---------------------------------------------------------------------------------------------------
# snnTorch


def _fire_at_or_above(x: Tensor) -> Tensor:
    """snnTorch's spike function for our convention, Theta(x) = 1 at x >= 0 (its own fires at x > 0)."""
    return (x >= 0).to(x.dtype)


class _SnnTorchNeuron(ForeignNeuron):
    def __init__(self, neuron: IFNeuron):
        import snntorch

        cell = snntorch.Leaky(
            beta=1.0,
            threshold=_scalar(neuron.threshold),
            spike_grad=_fire_at_or_above,
            reset_mechanism="subtract",
            init_hidden=True,
        )
        super().__init__(cell, neuron)

    def begin(self, x: Tensor) -> None:
        self.cell.mem = self.precharge(x)  # snnTorch starts at 0 (and re-zeroes a wrongly shaped state)

    def step(self, x: Tensor) -> Tensor:
        return self.cell(x)


def to_snntorch(snn) -> ForeignNetwork:
    """The network with snnTorch ``Leaky(beta=1)`` neurons (subtractive reset, pre-charged membrane)."""
    optional("snntorch", 'pip install "noiseadaptor[interop]"')
    return _replaced(snn, _SnnTorchNeuron, "snntorch")


# ---------------------------------------------------------------------------------------------------
# sinabs


class _SinabsNeuron(ForeignNeuron):
    def __init__(self, neuron: IFNeuron):
        from sinabs.activation import MembraneSubtract, SingleSpike
        from sinabs.layers import IAF

        cell = IAF(spike_threshold=_scalar(neuron.threshold), spike_fn=SingleSpike, reset_fn=MembraneSubtract())
        super().__init__(cell, neuron)

    def begin(self, x: Tensor) -> None:
        self.cell.init_state_with_shape(x.shape)
        self.cell.v_mem = self.precharge(x)

    def step(self, x: Tensor) -> Tensor:
        return self.cell(x.unsqueeze(1)).squeeze(1)  # sinabs layers take [batch, time, ...]


def to_sinabs(snn) -> ForeignNetwork:
    """The network with sinabs ``IAF`` neurons (one spike per step, subtractive reset, pre-charged)."""
    optional("sinabs", "pip install --no-deps sinabs (it pins an older nir; its layers run with the newer one)")
    return _replaced(snn, _SinabsNeuron, "sinabs")


# ---------------------------------------------------------------------------------------------------
# Norse


class _NorseNeuron(ForeignNeuron):
    def __init__(self, neuron: IFNeuron):
        from norse.torch import IAFCell

        super().__init__(IAFCell(), neuron)

    def begin(self, x: Tensor) -> None:
        from norse.torch import IAFFeedForwardState, IAFParameters

        # its parameters are a NamedTuple, not buffers: set here, on x's device and dtype, for each sample
        threshold = self.threshold.to(x.dtype)
        below = torch.nextafter(threshold, torch.zeros_like(threshold))  # Norse's v > below is our v >= threshold
        self.cell.p = IAFParameters(v_th=below, v_reset=torch.zeros((), dtype=x.dtype, device=x.device))
        self.state = IAFFeedForwardState(v=self.precharge(x))

    def step(self, x: Tensor) -> Tensor:
        charged = self.state.v + x  # what Norse's cell integrates to, before its hard reset to 0
        fired, state = self.cell(x, self.state)
        self.state = type(state)(v=state.v + fired * (charged - self.threshold.to(x.dtype)))  # reset by subtraction
        return fired


def to_norse(snn) -> ForeignNetwork:
    """The network with Norse ``IAFCell``s, their hard reset turned into ours (pre-charged membrane)."""
    optional("norse", 'pip install "noiseadaptor[interop]"')
    return _replaced(snn, _NorseNeuron, "norse")


# ---------------------------------------------------------------------------------------------------
# An exported file in nirtorch's own graph executor


class _Integrator(nn.Module):  # NIR's I with r = 1, dt = 1, from 0
    def forward(self, x: Tensor, state: Tensor | None = None):
        v = x if state is None else state + x
        return v, v


class _Fire(nn.Module):  # NIR's Threshold, firing at >= as our file's metadata says
    def __init__(self, threshold):
        super().__init__()
        self.register_buffer("threshold", torch.as_tensor(threshold))

    def forward(self, x: Tensor) -> Tensor:
        return (x >= self.threshold).to(x.dtype)


class _ScaleBy(nn.Module):  # NIR's Scale
    def __init__(self, scale):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class _SumPool(nn.Module):  # NIR's SumPool2d, an exact window sum
    def __init__(self, node):
        super().__init__()
        self.geometry = [tuple(int(v) for v in a) for a in (node.kernel_size, node.stride, node.padding)]

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.avg_pool2d(x, *self.geometry, divisor_override=1)


def _affine(node) -> nn.Linear:
    layer = nn.Linear(node.weight.shape[1], node.weight.shape[0])
    layer.weight.data, layer.bias.data = torch.as_tensor(node.weight), torch.as_tensor(node.bias)
    return layer


def nirtorch_network(graph) -> nn.Module:
    """A file written by ``export --primitives`` (float or integer), or its NIR graph, in nirtorch's graph
    executor (``nirtorch.nir_to_torch``): ``out, state = net(x)`` for the first step, ``net(x, state)`` after.
    With maps for what nirtorch 2.6 lacks or misreads: ``I``, ``Threshold`` (at >=, as the file says),
    ``Scale``, ``SumPool2d`` (an exact sum; its default is an LPPool2d), ``Affine`` (its default leaves
    torch's random bias) and ``Flatten`` (NIR counts dims without the batch). `fire_modules(net)` lists the
    threshold modules, whose outputs are each layer's spikes."""
    nir = optional("nir", 'pip install "noiseadaptor[nir]"')
    nirtorch = optional("nirtorch", 'pip install "noiseadaptor[interop]"')
    if isinstance(graph, (str, Path)):
        graph = nir.read(graph)
    node_map = {
        nir.I: lambda n: _Integrator(),
        nir.Threshold: lambda n: _Fire(n.threshold),
        nir.Scale: lambda n: _ScaleBy(n.scale),
        nir.SumPool2d: _SumPool,
        nir.Affine: _affine,
        nir.Flatten: lambda n: nn.Flatten(n.start_dim + 1, n.end_dim if n.end_dim < 0 else n.end_dim + 1),
    }
    return nirtorch.nir_to_torch(graph, node_map)


def fire_modules(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The threshold modules of a `nirtorch_network`: (name, module), one per neuron layer of the file."""
    return [(name, m) for name, m in net.named_modules() if isinstance(m, _Fire)]


@torch.no_grad()
def compare_with_file(snn: SpikingNetwork, path, x: Tensor, steps: int) -> dict:
    """`snn` and the ``--primitives`` file it was exported to, run side by side on `x` for `steps` steps: per
    neuron layer our firing rate and the share of spikes that differ; the share of images whose prediction
    (the argmax of the outputs summed over the steps) differs; and the largest difference of those sums (the
    file's times its ``output_scale``) relative to ours. Zero spikes differing: the file gives our spikes
    exactly."""
    nir = optional("nir", 'pip install "noiseadaptor[nir]"')
    graph = nir.read(path)
    theirs = nirtorch_network(graph)
    spikes = {"ours": {}, "theirs": {}}
    for name, m in fire_modules(theirs):
        m.register_forward_hook(lambda mod, i, out, key=name: spikes["theirs"].setdefault(key, []).append(out))
    hooks = []
    for name, m in snn.neurons():
        key = name.replace(".", "_") + "_fire"  # the file's name of the neuron's threshold node
        record = spikes["ours"].setdefault(key, [])
        hooks.append(m.register_forward_hook(lambda mod, i, out, record=record: record.append(out / mod.threshold)))
    snn.reset()
    state, ours, file = None, 0, 0
    for _ in range(steps):
        ours = ours + snn(x)
        out, state = theirs(x) if state is None else theirs(x, state)
        file = file + out * graph.metadata.get("output_scale", 1.0)
    for h in hooks:
        h.remove()
    if set(spikes["ours"]) != set(spikes["theirs"]):
        raise ValueError(f"{path} has other neuron layers than the network: {sorted(spikes['theirs'])}")
    differing = {
        k: (torch.stack(spikes["ours"][k]) != torch.stack(spikes["theirs"][k])).float().mean().item()
        for k in spikes["ours"]
    }
    return {
        "firing_rate": {k: torch.stack(v).mean().item() for k, v in spikes["ours"].items()},
        "spikes_differing": differing,
        "predictions_differing": (ours.argmax(1) != file.argmax(1)).float().mean().item(),
        "outputs_relative_difference": ((ours - file).abs().max() / ours.abs().max().clamp_min(1e-12)).item(),
    }
