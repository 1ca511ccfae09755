"""Export to other tools: a spiking network to NIR (a converted one with IF neurons, a directly trained one
with LIF neurons), a quantized ANN to ONNX.

How it works: docs/internals.md, "Export to NIR and ONNX"."""

from __future__ import annotations

import copy
import functools
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, fx, nn

from ..snn.graph import ADDS, PASS_THROUGH, POOLS, fold_batchnorm, pool_geometry, shapes, traced
from ..snn.lif import LIFNeuron, MultiStepNetwork
from ..snn.neurons import IFNeuron, SpikingNetwork
from .files import atomic_path

SUPPORTED = (
    "Conv2d, Linear, AvgPool2d, AdaptiveAvgPool2d, Flatten/torch.flatten, residual add, Identity, Dropout, IFNeuron, "
    "LIFNeuron"
)
_ENDS = {"placeholder": "input", "output": "output"}
INTEGER = (
    "weights (k * weight_scales[node], |k| <= 2**(weight_bits-1) - 1), biases, thresholds, initial membranes "
    "and Scale factors are integers, in units of each neuron layer's input (IF or Threshold metadata "
    "'input_gain'); pools are sum pools; the first layer's input is the analog image; outputs are in units "
    "of output_scale"
)
SEMANTICS = (
    "IF nodes reset by subtraction (not to v_reset), start at metadata 'initial_membrane' (not 0) "
    "and fire on v >= v_threshold; the input is analog and the same at every step"
)
LIF_SEMANTICS = (
    "LIF nodes are Euler steps of length metadata 'dt': v <- (1 - dt/tau) v + (r dt/tau) I = (1 - 1/tau_steps) v + I "
    "(r = tau/dt), fire on v >= v_threshold and reset to v_reset (0), or by subtraction where their metadata "
    "'reset' says so; the membrane starts at 0"
)


def optional(module: str, install: str):
    """Import an optional extra, or a ValueError with the line that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ValueError(f"this needs the optional package {module}: {install}") from None


def export_nir(
    snn: SpikingNetwork | MultiStepNetwork,
    sample_input: Tensor,
    path: str | Path | None = None,
    primitives: bool = False,
    dt: float = 1e-4,
):
    """The NIR graph of `snn`, written to `path` with ``nir.write`` when given: a `convert` result (IF nodes) or
    a directly trained `MultiStepNetwork` (`to_direct_snn`, ASGL or SG: LIF nodes, BatchNorm folded).

    primitives: write each IF neuron with primitives every NIR reader knows instead of an ``IF`` node (whose
    hard reset from 0 readers would apply): an integrator ``I`` (r = 1) into a ``Threshold`` at threshold
    minus the pre-charge, whose spikes go on and, through a ``Scale(-threshold)`` on a recurrent edge, back
    into the integrator one step later. With v the integrator (from 0) and u = v + pre-charge our membrane,
    v[t] = v[t-1] + x[t] - threshold * s[t-1] and s[t] = [v[t] >= threshold - pre-charge] is our neuron's
    u[t] = u[t-1] - threshold * s[t-1] + x[t], s[t] = [u[t] >= threshold]: the reset arrives with the recurrent
    edge's one-step delay, and the pre-charge moves into the threshold. Exact in real arithmetic; in float
    the two sums round apart, so a membrane within a rounding of its threshold may fire differently. The
    Threshold fires at >= (its metadata says so; readers' ties may differ).

    dt: for LIF nodes, the length of one simulation step in the file's time unit: each node has tau = tau_steps
    * dt and r = tau_steps, so that a reader stepping by dt runs our neuron (LIF_SEMANTICS). The default, 1e-4,
    is the step snnTorch's reader assumes; SpikingJelly's ``import_from_nir(path, dt=1e-4)`` takes it.

    `sample_input` is one batch of input as `snn` takes it (``[B, C, H, W]``; event frames ``[B, T, ...]``);
    it fixes the shapes. Raises TypeError for a layer NIR cannot express, ValueError for a neuron it cannot;
    warns where readers that follow the NIR spec only would run another neuron (IF nodes, LIF reset by
    subtraction)."""
    nir = optional("nir", 'pip install "noiseadaptor[nir]"')

    if isinstance(snn, MultiStepNetwork):
        if primitives:
            raise ValueError("primitives writes IF neurons; a directly trained network's LIF neurons are NIR LIF nodes")
        if not 0 < dt < float("inf"):
            raise ValueError(f"dt (the length of one step) must be a positive number, got {dt!r}")
        gm = traced(copy.deepcopy(snn.net).eval())
        fold_batchnorm(gm)
        sample = sample_input if snn.static_input else sample_input[:, 0]  # one step's input
    elif isinstance(snn, SpikingNetwork):
        gm, sample, dt = traced(snn.net), sample_input, 1.0  # IF nodes have r = 1: one step is one time unit
    else:
        raise TypeError(
            "export_nir expects a SpikingNetwork from noiseadaptor.convert() or a MultiStepNetwork from "
            f"noiseadaptor.to_direct_snn(), got {type(snn).__name__}"
        )
    exporter = _Exporter(nir, gm, shapes(gm, sample), primitives, dt)
    for node in gm.graph.nodes:
        exporter.visit(node)
    graph = exporter.graph(events=isinstance(snn, MultiStepNetwork) and not snn.static_input)
    if exporter.kinds & {"IF", "subtract"}:
        what = SEMANTICS if "IF" in exporter.kinds else LIF_SEMANTICS
        warnings.warn(
            f"NIR export: {what}. Tools that follow the NIR spec only (hard reset to v_reset, membrane from 0: "
            "Lava, SpiNNaker2, Xylo) will read a different network unless they honour each neuron node's "
            "metadata; SpikingJelly does after setting v_reset=None (and the membrane).",
            UserWarning,
            stacklevel=2,
        )
    if path is not None:
        buffer = io.BytesIO()  # HDF5 writes into memory: a failing disk is met by Python below, not inside h5py
        nir.write(buffer, graph)
        with atomic_path(path) as tmp:  # a killed or failed write leaves no half-written file
            Path(tmp).write_bytes(buffer.getvalue())
    return graph


class _Exporter:
    """One pass over the fx graph of a converted network, node by node in graph order: each node becomes
    a NIR node (built at the end, once every gain is known), is passed through, or is refused."""

    def __init__(self, nir, gm: fx.GraphModule, shapes: dict[fx.Node, tuple[int, ...]], primitives: bool, dt: float):
        self.nir, self.gm, self.shapes, self.primitives, self.dt = nir, gm, shapes, primitives, dt
        self.kinds: set[str] = set()  # "IF" (an IF node written), "LIF", "subtract" (a LIF reset by subtraction)
        self.gains = _Gains()
        self.gain: dict[fx.Node, float | str] = {}  # ours = gain * NIR's, per value (see _Gains)
        self.sources: dict[fx.Node, list[str]] = {}  # the NIR nodes whose summed outputs are this value
        self.builders, self.edges = {}, []
        self.out_value: fx.Node | None = None
        # an integer_network: every weighted layer has its unit (the gain of its output), the file holds integers
        self.bits = {m.weight_bits for m in gm.modules() if hasattr(m, "weight_bits")}
        self.weight_scales: dict[str, int] = {}  # its weights are k * scale, |k| <= 2**(bits-1) - 1

    def emit(self, node: fx.Node, make, source: fx.Node | None) -> None:
        # named after the module (IF nodes as snn.neurons() names them), unique, without dots
        name = _unique(node.target if node.op == "call_module" else _ENDS.get(node.op, node.name), self.builders)
        self.builders[name] = make
        self.edges.extend((s, name) for s in (self.sources[source] if source is not None else []))
        self.sources[node] = [name]

    def visit(self, node: fx.Node) -> None:
        nir, shapes, gains, gain = self.nir, self.shapes, self.gains, self.gain
        x = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        module = self.gm.get_submodule(node.target) if node.op == "call_module" else None
        if node.op == "placeholder":
            if self.builders:
                raise TypeError(f"cannot export a second input '{node.name}': NIR graphs here have one input")
            self.emit(node, lambda s=shapes[node]: nir.Input(np.array(s)), None)
            gain[node] = 1.0
        elif node.op == "output":
            if not isinstance(x, fx.Node):
                raise TypeError(f"cannot export output {node.args[0]!r}: the network must return one tensor")
            if gains.value(gain[x]) is None:
                gains.unify([gain[x], 1.0], node.name)  # a weighted last layer gives our output exactly
            self.emit(node, lambda s=shapes[x]: nir.Output(np.array(s)), x)
            self.out_value = x
        elif isinstance(module, IFNeuron):
            _check_neuron(node, module)
            if self.primitives:
                self.neuron_from_primitives(node, module, x)
            else:
                self.emit(node, lambda n=node, m=module, x=x: _if_node(nir, m, shapes[n], gains.resolve(gain[x])), x)
                self.kinds.add("IF")
            gain[node] = float(module.threshold)
        elif isinstance(module, LIFNeuron):
            _check_lif(node, module)
            gains.unify([gain[x], 1.0], node.name)  # its input as it is: the threshold is the trained one
            self.emit(node, lambda n=node, m=module: _lif_node(nir, m, shapes[n], self.dt), x)
            self.kinds |= {"LIF"} | ({"subtract"} if module.config.reset == "soft" else set())
            gain[node] = 1.0  # spikes of 1, as ours
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            _check_weighted(node, module)
            make = lambda m=module, n=node, x=x: _weighted(  # noqa: E731
                nir, m, shapes[x], gains.resolve(gain[x]), gains.resolve(gain[n])
            )
            self.emit(node, make, x)
            gain[node] = float(module.unit) if self.bits else gains.free(node.name)
            if self.bits:
                self.weight_scales[self.sources[node][0]] = module.weight_scale
        elif isinstance(module, POOLS):
            kernel, stride, padding = pool_geometry(node, module, shapes[x], shapes[node])
            pool = nir.SumPool2d if self.bits else nir.AvgPool2d  # integers: the window's sum, its area in the gain
            self.emit(node, lambda k=kernel, s=stride, p=padding: pool(*map(np.array, (k, s, p))), x)
            gain[node] = gain[x] / (kernel[0] * kernel[1]) if self.bits else gain[x]
        elif isinstance(module, nn.Flatten) or (module is None and node.target in (torch.flatten, "flatten")):
            self.flatten(node, module, x)
        elif isinstance(module, PASS_THROUGH):
            self.sources[node], gain[node] = self.sources[x], gain[x]
        elif node.op == "call_function" and node.target in ADDS:
            self.add(node)
        else:
            what = f"module {type(module).__name__}" if module is not None else f"{node.op} {_name(node.target)}"
            hint = " (convert with fold_batchnorm=True to fold it into the layer before)" * ("BatchNorm" in what)
            raise TypeError(f"cannot export {what} at node '{node.name}' to NIR{hint}; supported: {SUPPORTED}")

    def neuron_from_primitives(self, node: fx.Node, neuron: IFNeuron, x: fx.Node) -> None:
        """The IF neuron as I -> Threshold, with Threshold -> Scale(-threshold) -> I (see export_nir)."""
        nir, shape = self.nir, self.shapes[node]

        @functools.cache  # the three nodes are built once, by whichever builder runs first
        def parts(gain_in: float):
            threshold, start = _in_input_units(neuron, shape, gain_in)
            ones = np.ones(shape, np.float32)
            meta = {"fire": "x >= threshold", "pre-charge": "subtracted from the threshold", "threshold": threshold,
                    "input_gain": gain_in}  # fmt: skip
            return (nir.I(r=ones), nir.Threshold(ones * threshold - start, metadata=meta), nir.Scale(-threshold * ones))

        self.emit(node, lambda: parts(self.gains.resolve(self.gain[x]))[0], x)  # the integrator: inputs go here
        integrator = self.sources[node][0]
        fire, reset = _unique(f"{integrator}_fire", self.builders), _unique(f"{integrator}_reset", self.builders)
        for k, name in ((1, fire), (2, reset)):
            self.builders[name] = lambda k=k: parts(self.gains.resolve(self.gain[x]))[k]
        self.edges += [(integrator, fire), (fire, reset), (reset, integrator)]
        self.sources[node] = [fire]  # the spikes go on from the threshold

    def flatten(self, node: fx.Node, module: nn.Module | None, x: fx.Node) -> None:
        start = _arg(node, module, "start_dim", 1, 1 if module is not None else 0)
        end = _arg(node, module, "end_dim", 2, -1)
        start, end = (d % (len(self.shapes[x]) + 1) for d in (start, end))  # non-negative, batch = 0
        if start == 0:
            raise TypeError(f"cannot export flatten at node '{node.name}': it flattens the batch dimension")
        dims = [start - 1, end - 1]  # NIR counts dims without the batch
        self.emit(node, lambda s=self.shapes[x], d=dims: self.nir.Flatten({"input": np.array(s)}, *d), x)
        self.gain[node] = self.gain[x]

    def add(self, node: fx.Node) -> None:
        terms = list(node.args)
        if len(terms) != 2 or node.kwargs or not all(isinstance(t, fx.Node) for t in terms):
            raise TypeError(
                f"cannot export add at node '{node.name}': only the sum of two tensors "
                "(no constants, no alpha) maps to NIR edges"
            )
        if self.bits:  # an integer network: its terms have fixed gains, a shortcut's is a whole multiple
            self.sources[node] = [name for t in terms for name in self.scaled(t, terms, node)]
            self.gain[node] = min(self.gains.resolve(self.gain[t]) for t in terms)
            return
        self.sources[node] = self.sources[terms[0]] + self.sources[terms[1]]
        if len(set(self.sources[node])) < len(self.sources[node]):  # edges are a set: x + x would count once
            raise TypeError(f"cannot export add at node '{node.name}': it sums one value with itself")
        self.gain[node] = self.gains.unify([self.gain[t] for t in terms], node.name)

    def scaled(self, term: fx.Node, terms: list[fx.Node], add: fx.Node) -> list[str]:
        """The NIR nodes of one term of an integer network's add, in the sum's units: a shortcut's spikes,
        worth m > 1 units of the sum, through a Scale(m) node."""
        ratio = self.gains.resolve(self.gain[term]) / min(self.gains.resolve(self.gain[t]) for t in terms)
        if np.isclose(ratio, 1.0, rtol=1e-6):
            return self.sources[term]
        if not np.isclose(ratio, np.rint(ratio), rtol=0, atol=1e-3):
            raise ValueError(f"cannot export add at node '{add.name}': a term is {ratio:g} units of the sum, not whole")
        name = _unique(f"{add.name}_shortcut", self.builders)
        factor = np.full(self.shapes[term], np.rint(ratio), np.float32)
        self.builders[name] = lambda: self.nir.Scale(factor)
        self.edges.extend((source, name) for source in self.sources[term])
        return [name]

    def graph(self, events: bool = False):
        nodes = {name: make() for name, make in self.builders.items()}
        lif = "LIF" in self.kinds
        return self.nir.NIRGraph(
            nodes,
            self.edges,
            metadata={
                "producer": "noiseadaptor",
                "semantics": LIF_SEMANTICS if lif else SEMANTICS,
                "neuron_reset": "zero" if lif and "subtract" not in self.kinds else "subtract",
                "input_encoding": "one event frame per step" if events else "analog, same every step",
                "dt": self.dt,
                "output_scale": self.gains.resolve(self.gain[self.out_value]),
                "note": "outputs are per step; the prediction is the argmax of their sum over steps",
                **(
                    {"weight_bits": max(self.bits), "weight_scales": self.weight_scales, "integer": INTEGER}
                    if self.bits
                    else {}
                ),
            },
        )


class _Gains:
    """The factor between our values and the exported ones, per value: a spike train of threshold t has
    gain t (NIR spikes are 1, ours are t); a Conv/Linear output may take any gain (its weights are
    rescaled), named by its node and decided when a residual add ties it to the other summand."""

    def __init__(self):
        self.parent: dict[str, str] = {}
        self.fixed: dict[str, float] = {}

    def free(self, name: str) -> str:
        self.parent[name] = name
        return name

    def _root(self, g: str) -> str:
        while self.parent[g] != g:
            g = self.parent[g]
        return g

    def value(self, g: float | str) -> float | None:
        return g if isinstance(g, float) else self.fixed.get(self._root(g))

    def resolve(self, g: float | str) -> float:
        v = self.value(g)
        return 1.0 if v is None else v

    def unify(self, gs: list[float | str], where: str) -> float | str:
        """All of `gs` share one gain from now on (they are summed); returns it."""
        known = sorted({v for v in map(self.value, gs) if v is not None})
        if known and not np.isclose(known[0], known[-1], rtol=1e-6):
            raise ValueError(
                f"cannot export add at node '{where}': it sums spike trains of different thresholds "
                f"{known} with no Conv/Linear on their way to rescale them"
            )
        roots = {self._root(g) for g in gs if isinstance(g, str)}
        for r in roots:
            self.parent[r] = min(roots)
            if known:
                self.fixed[r] = known[0]
        return min(roots) if roots else known[0]


def _check_neuron(node: fx.Node, neuron: IFNeuron) -> None:
    if neuron.threshold.numel() != 1 or neuron.negative_spikes:
        raise ValueError(
            f"cannot export IFNeuron at node '{node.name}': per-neuron thresholds and negative "
            "spikes have no NIR IF equivalent (SpikingJelly also needs one threshold per layer)"
        )


def _check_lif(node: fx.Node, neuron: LIFNeuron) -> None:
    if neuron.recurrent is not None:
        raise TypeError(f"cannot export LIFNeuron at node '{node.name}': recurrent synapses are not supported here")
    if neuron.config.neuron != "lif":
        raise ValueError(
            f"cannot export the C-LIF neuron at node '{node.name}': NIR's CubaLIF (a synaptic current into a "
            "membrane reset to v_reset) would run another neuron; ours is its membrane read one step late with "
            "reset by subtraction (Guetig 2016). Export networks trained with neuron 'lif'"
        )


def _lif_node(nir, neuron: LIFNeuron, shape: tuple, dt: float):
    c = neuron.config
    ones, zeros = np.ones(shape), np.zeros(shape)  # float64: tau / dt reads back as tau_steps exactly
    return nir.LIF(
        tau=ones * (c.tau * dt),
        r=ones * c.tau,
        v_leak=zeros,
        v_threshold=ones * c.threshold,
        v_reset=zeros,
        metadata={"reset": "zero" if c.reset == "hard" else "subtract", "fire": "v >= v_threshold",
                  "tau_steps": c.tau, "dt": dt},
    )  # fmt: skip


def _in_input_units(neuron: IFNeuron, shape: tuple, gain_in: float) -> tuple[float, np.ndarray]:
    """The neuron's threshold and initial membrane in the units of the exported input (ours / gain_in); for
    an integer network's neuron the integers themselves (its simulation-only headroom taken off)."""
    threshold = float(neuron.threshold) / gain_in
    start = (neuron.initial_membrane.detach().cpu() * threshold).expand(shape).numpy().astype(np.float32)
    if hasattr(neuron, "unit"):
        return float(np.rint(threshold)), np.rint(start - neuron.headroom)
    return threshold, start


def _if_node(nir, neuron: IFNeuron, shape: tuple, gain_in: float):
    threshold, start = _in_input_units(neuron, shape, gain_in)
    ones = np.ones(shape, np.float32)
    return nir.IF(
        r=ones,
        v_threshold=ones * threshold,
        v_reset=np.zeros(shape, np.float32),
        metadata={
            "reset": "subtract",
            "initial_membrane": start,
            "fire": "v >= v_threshold",
            "input": "analog, same every step",
            "threshold": float(neuron.threshold),
            "input_gain": gain_in,
        },
    )


def _check_weighted(node: fx.Node, m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d) and (isinstance(m.padding, str) or m.padding_mode != "zeros"):
        raise TypeError(f"cannot export Conv2d at node '{node.name}': only numeric zero padding maps to NIR")


def _weighted(nir, m: nn.Module, in_shape: tuple, gain_in: float, gain_out: float):
    """Conv2d/Linear with the input's gain folded into the weights and the output's divided out."""
    w = (m.weight.detach().cpu() * (gain_in / gain_out)).numpy().astype(np.float32)
    b = None if m.bias is None else (m.bias.detach().cpu() / gain_out).numpy().astype(np.float32)
    if hasattr(m, "unit"):  # an integer network's layer: the file holds its integers
        w, b = np.rint(w), None if b is None else np.rint(b)
    if isinstance(m, nn.Linear):
        return nir.Linear(w) if b is None else nir.Affine(w, b)
    return nir.Conv2d(
        tuple(in_shape[-2:]),
        w,
        m.stride,
        m.padding,
        m.dilation,
        m.groups,
        np.zeros(w.shape[0], np.float32) if b is None else b,
    )


def _arg(node: fx.Node, module: nn.Module | None, name: str, position: int, default: int) -> int:
    if module is not None:
        return getattr(module, name)
    return node.kwargs.get(name, node.args[position] if len(node.args) > position else default)


def _unique(name: str, taken) -> str:
    name, k = name.replace(".", "_"), 0  # NIRTorch makes module names of node names: no dots
    while (name if not k else f"{name}_{k}") in taken:
        k += 1
    return name if not k else f"{name}_{k}"


def _name(target) -> str:
    return getattr(target, "__name__", str(target))


def export_onnx(qmodel: nn.Module, sample_input: Tensor, path: str | Path) -> None:
    """Write the quantized ANN (a `prepare` result; exported in eval mode, where the quantizer is a round
    and a clip, then restored) to ONNX with torch.onnx.export; needs onnx and onnxscript. The batch size
    is the sample's: the quantizer's gradient scale reads the tensor size, which fixes the shape."""
    for module, line in (
        ("onnx", 'pip install "noiseadaptor[onnx]"'),
        ("onnxscript", 'pip install "noiseadaptor[onnx]"'),
    ):
        optional(module, line)
    was_training = qmodel.training
    try:
        with torch.no_grad(), atomic_path(path) as tmp:
            torch.onnx.export(  # one self-contained file: the weights inside, no sidecar named after the temporary
                qmodel.eval(), (sample_input,), tmp, input_names=["input"], output_names=["output"], verbose=False,
                external_data=False,
            )  # fmt: skip
    finally:
        qmodel.train(was_training)
