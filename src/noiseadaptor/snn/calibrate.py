"""Phase II of the dual-phase conversion (Wang et al. 2023, paper 002): layer-wise calibration of a
converted network against its quantized ANN, from a few hundred unlabelled samples.

How it works: docs/internals.md, "Dual-phase Phase II: layer-wise calibration"."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ..ann.preparation import quantizers
from ..checks import module_device, positive_int
from ..hooks import StopForward
from . import surrogate as surrogates
from .neurons import SpikingNetwork, StepMode, integrate_and_fire
from .simulation import default_steps_per_call, simulate

Granularity = Literal["neuron", "channel", "layer"]
LossKind = Literal["kl", "mse"]


# ---------------------------------------------------------------------------------------------------
# The differentiable IF step


def if_rate(
    current: Tensor,
    threshold: Tensor,
    initial_membrane: Tensor,
    T: int,
    batch: int,
    surrogate_width: Tensor | float = 1.0,
    surrogate: str = "rectangular",
) -> Tensor:
    """Mean output over T steps of IF neurons (reset by subtraction, output spike*threshold), with
    gradients to `current` and `initial_membrane` by BPTT through the surrogate (`noiseadaptor.snn.surrogate`,
    width in thresholds; a tensor width that requires grad is learned).

    current: ``[T*batch, ...]`` time-major, or ``[batch, ...]`` for the same input at every step (as
    `SpikingNetwork.run` passes them). initial_membrane: in units of the threshold, broadcastable to one
    sample's shape. The forward is the same arithmetic as `IFNeuron` (same spikes, same rate)."""
    steps = StepMode(T, batch).unfold(current)  # None: the same current at every step
    width = surrogate_width * threshold.to(current.dtype)
    membrane = initial_membrane * threshold
    total = None

    def spike(x: Tensor) -> Tensor:
        return surrogates.spike(x, surrogate, width)

    for t in range(T):
        membrane, fired = integrate_and_fire(membrane, current if steps is None else steps[t], threshold, spike)
        total = fired if total is None else total + fired
    return total * threshold / T


# ---------------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class FineOptions:
    """Fine calibration options: `epochs` passes over the samples per layer, Adam `lr` (cosine schedule),
    `loss` "kl" (Eq. 17) or "mse", the `surrogate` shape ("rectangular", Eq. 18; "sigmoid", the authors'
    code) and its `surrogate_width` in thresholds, learned with the layer when `learn_width` (the authors'
    code), train the layer's `weights` and biases and/or its neurons' initial `membrane`, a `holdout`
    fraction of the samples kept out to pick the best epoch (initial state included), `patience` epochs
    without improvement before a layer stops, `seed` of the shuffling, `cache_bytes` for a layer's inputs
    over T steps (recomputed per batch above it)."""

    epochs: int = 30
    lr: float = 5e-4
    loss: str = "kl"
    surrogate: str = "rectangular"
    surrogate_width: float = 1.0
    learn_width: bool = False
    weights: bool = True
    membrane: bool = True
    holdout: float = 0.2
    patience: int | None = None
    seed: int = 0
    cache_bytes: int = 1 << 30

    def __post_init__(self):
        if self.loss not in ("kl", "mse"):
            raise ValueError(f"loss must be 'kl' or 'mse', got {self.loss!r}")
        positive_int(self.epochs, "epochs", zero=True)
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be a fraction in [0, 1), got {self.holdout!r}")
        surrogates.check_shape(self.surrogate)
        if self.lr <= 0 or self.surrogate_width <= 0:
            raise ValueError(f"lr and surrogate_width must be positive, got {self.lr!r} and {self.surrogate_width!r}")


def calibrate_initial_membrane(
    snn: SpikingNetwork,
    qmodel: nn.Module,
    data,
    T: int,
    num_samples: int = 256,
    granularity: Granularity = "neuron",
    batch_size: int = 128,
    steps_per_call: int | None = None,
    layers: Sequence[str] | None = None,
) -> dict[str, float]:
    """Coarse calibration (Eq. 16): shift every neuron's initial membrane so that the SNN's mean rate over
    `num_samples` samples and T steps equals the QC-ANN's mean activation, layer by layer.

    data: a tensor of inputs, or an iterable of batches (``(inputs, labels)`` or inputs); the first
    `num_samples` inputs are used, labels never. granularity: one start per "neuron" (the paper),
    per "channel" (dim 1) or per "layer". layers: the neuron names to calibrate (default all, in graph
    order). Returns {layer: mean |shift|, in thresholds}."""
    return dual_phase_calibrate(
        snn,
        qmodel,
        data,
        T,
        fine=False,
        num_samples=num_samples,
        granularity=granularity,
        batch_size=batch_size,
        steps_per_call=steps_per_call,
        layers=layers,
    )["coarse"]


def calibrate_weights(
    snn: SpikingNetwork,
    qmodel: nn.Module,
    data,
    T: int,
    num_samples: int = 256,
    batch_size: int = 32,
    steps_per_call: int | None = None,
    layers: Sequence[str] | None = None,
    **options,
) -> dict[str, dict]:
    """Fine calibration (Eq. 17-19): per layer, in graph order, train the layer's weights and biases and
    its neurons' initial membrane by BPTT over T steps with the rectangular surrogate, to minimise the
    loss between the layer's mean output over T and the QC-ANN's activation. `options`: see
    `FineOptions`. Returns {layer: {"loss_before", "loss_after" (held-out), "best_epoch", "parameters"
    (trained element count)}}."""
    return dual_phase_calibrate(
        snn,
        qmodel,
        data,
        T,
        coarse=False,
        num_samples=num_samples,
        batch_size=batch_size,
        steps_per_call=steps_per_call,
        layers=layers,
        **options,
    )["fine"]


def dual_phase_calibrate(
    snn: SpikingNetwork,
    qmodel: nn.Module,
    data,
    T: int,
    coarse: bool = True,
    fine: bool = True,
    num_samples: int = 256,
    granularity: Granularity = "neuron",
    batch_size: int = 32,
    steps_per_call: int | None = None,
    layers: Sequence[str] | None = None,
    final_coarse: bool = False,
    select_on=None,
    **fine_options,
) -> dict[str, dict]:
    """Phase II on a converted network, in place: for each layer in graph order, coarse calibration of
    the initial membrane (if `coarse`) and then fine calibration of weights and initial membrane (if
    `fine`; `fine_options`, the fields of `FineOptions`), so each layer is calibrated on the outputs of the
    calibrated layers before it and fine calibration starts from the coarse solution. `final_coarse`
    adds one more coarse pass over every layer at the end (the authors' script: coarse, fine, coarse).
    `select_on`: labelled batches (inputs, labels), a held-out part of the training set (never the test
    set); with `final_coarse`, the final pass is undone unless the SNN's top-1 at T on them is at least
    what it was before the pass.

    Returns {"coarse": {layer: mean |shift|}, "fine": {layer: report}, "final_coarse": {layer: mean
    |shift|}} for the parts that ran, and with `select_on` "selection": {"before", "after" (top-1 on
    select_on), "kept" (bool)}."""
    options = _fine_options(fine_options)
    if granularity not in ("neuron", "channel", "layer"):
        raise ValueError(f"granularity must be 'neuron', 'channel' or 'layer', got {granularity!r}")
    cal = _Calibration(snn, qmodel, data, T, num_samples, batch_size, steps_per_call)
    report: dict[str, dict] = {part: {} for part, on in (("coarse", coarse), ("fine", fine)) if on}
    if not cal.n:
        return report
    cache_bytes = options.cache_bytes
    for name in cal.layers(layers):
        # One pass over the samples serves both steps: coarse needs the layer's rate, fine its inputs
        # (the earlier neurons' outputs, which the coarse shift of this layer does not change).
        sub, boundary = cal.layer_graph(name) if fine else (None, [])
        seen = cal.observe(name, [b.target for b in boundary if b.op == "call_module"], cache_bytes)
        if coarse:
            report["coarse"][name] = cal.coarse(name, granularity, seen)
        if fine:
            report["fine"][name] = cal.fine(name, sub, boundary, seen, options, batch_size)
    if select_on is not None and not final_coarse:
        raise ValueError("select_on chooses whether to keep the final coarse pass: give it with final_coarse=True")
    if final_coarse:
        report.update(_final_coarse(cal, granularity, cal.layers(layers), cache_bytes, select_on))
    return report


def _final_coarse(cal: "_Calibration", granularity: Granularity, layers: list[str], cache_bytes: int, select_on):
    """One more coarse pass over `layers`; with `select_on`, undone unless top-1 at T on it does not drop."""

    def top1() -> float:
        result = simulate(cal.snn, select_on, T=[cal.T], device=module_device(cal.snn),
                          steps_per_call=cal.steps_per_call, progress=False)  # fmt: skip
        return result.accuracy[cal.T]

    saved = [(n, n.initial_membrane.clone()) for _, n in cal.snn.neurons()] if select_on is not None else []
    before = top1() if select_on is not None else None
    report = {
        "final_coarse": {name: cal.coarse(name, granularity, cal.observe(name, [], cache_bytes)) for name in layers}
    }
    if before is not None:
        after = top1()
        report["selection"] = {"before": before, "after": after, "kept": after >= before}
        if after < before:
            for neuron, start in saved:
                neuron.initial_membrane = start
    return report


def _fine_options(given: dict) -> FineOptions:
    known = [f.name for f in fields(FineOptions)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise TypeError(f"unexpected fine-calibration options {unknown}; they are {sorted(known)}")
    return FineOptions(**given)


# ---------------------------------------------------------------------------------------------------
# Implementation


def collect_samples(data, num_samples: int) -> Tensor:
    """The first `num_samples` inputs of a tensor or of an iterable of batches ((inputs, labels) or
    inputs); fewer if the data has fewer."""
    if isinstance(data, Tensor):
        return data[:num_samples]
    parts, have = [], 0
    if num_samples > 0:
        for batch in data:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not isinstance(x, Tensor):
                raise TypeError("calibration data must be a tensor or batches of (inputs, labels) or inputs")
            parts.append(x[: num_samples - have])
            have += len(parts[-1])
            if have >= num_samples:
                break
    if not parts:
        if num_samples > 0:
            raise ValueError("calibration data yielded no samples")
        return torch.empty(0)
    return torch.cat(parts)


class _Calibration:
    """The shared state of one Phase II run: the samples, the graph order of the neurons, and how to
    run the SNN and the QC-ANN up to a layer."""

    def __init__(
        self,
        snn: SpikingNetwork,
        qmodel: nn.Module,
        data,
        T: int,
        num_samples: int,
        batch_size: int,
        steps_per_call: int | None,
    ):
        if not isinstance(snn, SpikingNetwork):
            raise TypeError(f"expected the SpikingNetwork returned by convert(), got {type(snn).__name__}")
        if not quantizers(qmodel):
            raise TypeError("qmodel must be the prepared (quantized) model the SNN was converted from")
        positive_int(T, "T")
        positive_int(batch_size, "batch_size")
        positive_int(num_samples, "num_samples", zero=True)
        self.snn, self.qmodel, self.T, self.batch_size = snn, qmodel, T, batch_size
        self.device, self.q_device = module_device(snn), module_device(qmodel)
        self.steps_per_call = steps_per_call or default_steps_per_call(self.device)
        self.x = collect_samples(data, num_samples) if num_samples else torch.empty(0)
        self.n = len(self.x)
        self.neurons = dict(snn.neurons())
        self.quantizers = dict(quantizers(qmodel))
        missing = [name for name in self.neurons if name not in self.quantizers]
        if missing:
            raise ValueError(
                f"SNN neurons {missing} have no QuantReLU of the same name in qmodel; pass the "
                "prepared model this SNN was converted from"
            )
        self.graph = snn.net if isinstance(snn.net, fx.GraphModule) else None
        if self.graph is not None:
            self.order = [
                n.target for n in self.graph.graph.nodes if n.op == "call_module" and n.target in self.neurons
            ]
        else:
            self.order = list(self.neurons)
        self.calibrated: set[int] = set()  # ids of parameters already fine-calibrated with an earlier layer

    def layers(self, names: Sequence[str] | None) -> list[str]:
        if names is None:
            return list(self.order)
        unknown = [n for n in names if n not in self.neurons]
        if unknown:
            raise ValueError(f"unknown layers {unknown}; the SNN's neurons are {self.order}")
        return [n for n in self.order if n in set(names)]

    def batches(self):
        """Indices of all samples, in batches."""
        return _split(torch.arange(self.n), self.batch_size)

    # -- running the two networks up to a layer ------------------------------------------------------

    @torch.no_grad()
    def ann_activation(self, name: str, x: Tensor) -> Tensor:
        """The QC-ANN's activation at quantizer `name` (eval mode: no noise) on inputs x."""
        out: list[Tensor] = []

        def hook(module, args, output):
            out.append(output.detach())
            raise StopForward

        was_training = self.qmodel.training
        self.qmodel.eval()
        handle = self.quantizers[name].register_forward_hook(hook)
        try:
            with contextlib.suppress(StopForward):
                self.qmodel(x.to(self.q_device))
        finally:
            handle.remove()
            self.qmodel.train(was_training)
        return out[0].to(self.device)

    @torch.no_grad()
    def run_snn(self, name: str, x: Tensor, record: Sequence[str] = ()) -> tuple[Tensor, dict[str, Tensor]]:
        """T steps of the SNN on x, stopping after neuron `name`: its mean output over T ``[B, ...]`` and
        the outputs of the `record` neurons, time-major ``[T, B, ...]``."""
        x = x.to(self.device)
        batch = x.shape[0]
        total: list[Tensor] = []
        records: dict[str, list[Tensor]] = {r: [] for r in record}

        def keep(key):
            def hook(module, args, output):
                records[key].append(output.view(-1, batch, *output.shape[1:]))

            return hook

        def last(module, args, output):
            summed = output.view(-1, batch, *output.shape[1:]).sum(0)
            total.append(summed if not total else total.pop() + summed)
            raise StopForward

        handles = [self.neurons[r].register_forward_hook(keep(r)) for r in record]
        handles.append(self.neurons[name].register_forward_hook(last))
        self.snn.reset()
        try:
            for t0 in range(0, self.T, self.steps_per_call):
                with contextlib.suppress(StopForward):
                    self.snn.run(x, min(self.steps_per_call, self.T - t0))
        finally:
            for h in handles:
                h.remove()
            self.snn.reset()
        return total[0] / self.T, {r: torch.cat(v) for r, v in records.items()}

    # -- one pass over the samples at a layer, and coarse calibration -----------------------------------

    @torch.no_grad()
    def observe(self, name: str, record: Sequence[str], cache_bytes: int) -> "_Observed":
        """One pass over the samples up to layer `name`: the QC-ANN's activations there (the targets),
        the SNN layer's mean rate over T, and the `record` neurons' outputs over T when they fit in
        `cache_bytes` (else None: fine calibration recomputes them per batch)."""
        targets, rates, cache = [], [], {r: [] for r in record}
        for i, index in enumerate(self.batches()):
            rate, recorded = self.run_snn(name, self.x[index], record)
            if i == 0 and record:
                per_sample = sum(v.numel() * v.element_size() for v in recorded.values()) / len(index)
                cache = cache if per_sample * self.n <= cache_bytes else None
            targets.append(self.ann_activation(name, self.x[index]))
            rates.append(rate)
            if cache is not None:
                for r in record:
                    cache[r].append(recorded[r])
        cache = {r: torch.cat(v, dim=1) for r, v in cache.items()} if cache is not None else None
        return _Observed(torch.cat(targets), torch.cat(rates), cache)

    @torch.no_grad()
    def coarse(self, name: str, granularity: Granularity, seen: "_Observed") -> float:
        neuron = self.neurons[name]
        gap = (seen.targets - seen.rates).mean(0)
        if granularity == "channel" and gap.dim() > 1:
            gap = gap.mean(dim=tuple(range(1, gap.dim())), keepdim=True)
        elif granularity == "layer":
            gap = gap.mean()
        shift = self.T * gap / neuron.threshold
        neuron.initial_membrane = (neuron.initial_membrane + shift).detach()
        return shift.abs().mean().item()

    # -- fine calibration ------------------------------------------------------------------------------

    def layer_graph(self, name: str) -> tuple[fx.GraphModule, list[fx.Node]]:
        """The part of the SNN graph that computes neuron `name`'s input from the network input and the
        outputs of earlier neurons (its boundary): a GraphModule sharing the SNN's modules, taking the
        boundary values in order."""
        if self.graph is None:
            raise TypeError("fine calibration needs the fx.GraphModule network convert() builds")
        nodes = {n.target: n for n in self.graph.graph.nodes if n.op == "call_module"}
        source = nodes[name].args[0]
        inside, boundary, stack = set(), [], [source]
        while stack:
            node = stack.pop()
            if node in inside or node in boundary:
                continue
            if node.op == "placeholder" or (node.op == "call_module" and node.target in self.neurons):
                boundary.append(node)
                continue
            inside.add(node)
            stack.extend(node.all_input_nodes)
        order = {n: i for i, n in enumerate(self.graph.graph.nodes)}
        boundary.sort(key=order.get)
        graph = fx.Graph()
        env = {b: graph.placeholder(f"in_{i}") for i, b in enumerate(boundary)}
        for node in sorted(inside, key=order.get):
            env[node] = graph.node_copy(node, lambda n: env[n])
        graph.output(env[source])
        return fx.GraphModule(self.graph, graph), boundary

    def fine(
        self, name: str, sub: fx.GraphModule, boundary: list[fx.Node], seen: "_Observed", options: FineOptions,
        batch_size: int,
    ) -> dict:  # fmt: skip
        """Fine calibration of neuron layer `name` (Eq. 17-18): the weights of `sub` (the graph computing its
        input; those no earlier layer calibrated) and/or its initial membrane, trained through the surrogate
        rate so that its T-step rate matches the QC-ANN's activation `seen.targets`."""
        neuron = self.neurons[name]
        record = [b.target for b in boundary if b.op == "call_module"]
        if sum(b.op == "placeholder" for b in boundary) > 1:
            raise TypeError("fine calibration supports networks with one input")
        params = [p for p in dict.fromkeys(sub.parameters()) if id(p) not in self.calibrated] if options.weights else []
        threshold = neuron.threshold.detach()
        targets, cache = seen.targets, seen.cache
        start = neuron.initial_membrane.detach().to(self.device).expand(targets.shape[1:]).clone()
        start.requires_grad_(options.membrane)
        width = torch.tensor(float(options.surrogate_width), device=self.device, requires_grad=options.learn_width)
        trained = params + ([start] if options.membrane else []) + ([width] if options.learn_width else [])

        def inputs(index: Tensor) -> list[Tensor]:
            recorded = (
                {r: cache[r][:, index.to(cache[r].device)] for r in record}
                if cache is not None
                else self.run_snn(name, self.x[index], record)[1]
            )
            values = []
            for b in boundary:
                if b.op == "placeholder":
                    values.append(self.x[index].to(self.device))
                else:
                    v = recorded[b.target]
                    values.append(v.reshape(-1, *v.shape[2:]))
            return values

        criterion = _kl_loss if options.loss == "kl" else _mse_loss

        def loss_on(index: Tensor) -> Tensor:
            current = sub(*inputs(index))
            rate = if_rate(current, threshold, start, self.T, len(index), width.clamp(min=1e-3), options.surrogate)
            return criterion(rate, targets[index])

        saved_flags = {p: p.requires_grad for p in sub.parameters()}
        for p in sub.parameters():
            p.requires_grad_(any(p is q for q in params))
        try:
            report = _train_to_best(trained, loss_on, self.n, options, batch_size)
        finally:
            for p, flag in saved_flags.items():
                p.requires_grad_(flag)
        self.calibrated.update(id(p) for p in params)
        if options.membrane:
            neuron.initial_membrane = start.detach().clone()
        return {**report, "surrogate_width": width.item()} if options.learn_width else report


def _train_to_best(trained: list[Tensor], loss_on, n: int, options: FineOptions, batch_size: int) -> dict:
    """Adam on `trained` over the indices 0..n-1 (a `holdout` share kept out), `loss_on(index)` the mean loss
    of a batch; the tensors end at their best held-out state (the starting one included), in place."""
    generator = torch.Generator().manual_seed(options.seed)
    order = torch.randperm(n, generator=generator)
    n_held = int(round(n * options.holdout)) if n > 1 else 0
    held, train = (order[:n_held], order[n_held:]) if n_held else (order, order)

    def held_loss() -> float:
        with torch.no_grad():
            return sum(loss_on(i).item() * len(i) for i in _split(held, batch_size)) / len(held)

    best_epoch, before = 0, held_loss()
    best, best_state = before, [t.detach().clone() for t in trained]
    try:
        if trained and options.epochs > 0:
            optimizer = torch.optim.Adam(trained, lr=options.lr, weight_decay=0.0)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=options.epochs)
            since_best = 0
            for epoch in range(1, options.epochs + 1):
                shuffled = train[torch.randperm(len(train), generator=generator)]
                with torch.enable_grad():
                    for index in _split(shuffled, batch_size):
                        optimizer.zero_grad(set_to_none=True)
                        loss_on(index).backward()
                        optimizer.step()
                schedule.step()
                current = held_loss()
                if current < best:
                    best, best_epoch, since_best = current, epoch, 0
                    best_state = [t.detach().clone() for t in trained]
                else:
                    since_best += 1
                    if options.patience is not None and since_best >= options.patience:
                        break
    finally:
        with torch.no_grad():
            for t, value in zip(trained, best_state):
                t.copy_(value)
    return {"loss_before": before, "loss_after": best, "best_epoch": best_epoch,
            "parameters": sum(t.numel() for t in trained)}  # fmt: skip


class _Observed(NamedTuple):
    """What one pass over the samples saw at a layer (see `_Calibration.observe`)."""

    targets: Tensor  # QC-ANN activations, [N, ...]
    rates: Tensor  # the SNN layer's mean output over T, [N, ...]
    cache: dict[str, Tensor] | None  # recorded neuron outputs, [T, N, ...]; None when too large


def _split(index: Tensor, size: int):
    for i in range(0, len(index), size):
        yield index[i : i + size]


def _kl_loss(output: Tensor, target: Tensor) -> Tensor:
    """KL(softmax(target) || softmax(output)) over each sample's flattened layer, averaged over samples
    (Eq. 17 as the authors' kl_loss computes it)."""
    b = output.shape[0]
    return F.kl_div(
        F.log_softmax(output.reshape(b, -1), -1), F.softmax(target.reshape(b, -1), -1), reduction="batchmean"
    )


def _mse_loss(output: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(output, target)
