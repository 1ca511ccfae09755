"""The method registry: every training method registers once, with its family, the settings it reads,
how it builds its trainable network and which optimiser its paper uses. CLI choices and help, recipe
validation, checkpoint rebuilding and error messages are all generated from it (cf. timm's
``register_model``).

Families:
- "float": the ReLU network itself (pre-training, and the source of every other method).
- "conversion": a quantized ANN that `convert` turns into an IF network (Noise Adaptor and its
  baselines, dual-phase's source ANN and Phase I).
- "direct": an SNN trained directly through time (ASGL and plain surrogate gradients).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from torch import nn

from ..ann.quantizer import QuantConfig
from ..train import OptimizerConfig

if TYPE_CHECKING:
    from ..runconfig import RunConfig
    from .direct import DirectConfig

Family = Literal["float", "conversion", "direct"]


@dataclass(frozen=True)
class Method:
    """name: as the CLI, recipes and checkpoints spell it. summary: one line of help. reads: the RunConfig
    fields that only some methods use and this one does (giving another method's field is an error).
    quant / direct: the QuantConfig or DirectConfig of a run (one of them, by family). optimizer: the
    paper's optimiser for a run's lr, weight decay and optimizer kind."""

    name: str
    family: Family
    summary: str
    reads: tuple[str, ...] = ()
    quant: Callable[["RunConfig"], QuantConfig] | None = None
    direct: Callable[["RunConfig"], "DirectConfig"] | None = None
    optimizer_preset: Callable[..., OptimizerConfig] = field(default=OptimizerConfig)

    def optimizer(self, run: "RunConfig") -> OptimizerConfig:
        return self.optimizer_preset(
            kind=run.optimizer,
            lr=run.lr,
            weight_decay=run.weight_decay,
            width_lr=run.width_lr,
            restart_epochs=run.restart_epochs,
        )

    def build(self, model: nn.Module, run: "RunConfig") -> nn.Module:
        """The trainable network of `run` from its float `model`."""
        if self.family == "float":
            return model
        if self.family == "conversion":
            from ..ann.preparation import prepare

            return prepare(model, self.quant(run))
        from .direct import to_direct_snn

        return to_direct_snn(model, self.direct(run), static_input=not run.event_input)


_REGISTRY: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def list_methods(family: Family | None = None) -> list[str]:
    return [name for name, m in _REGISTRY.items() if family is None or m.family == family]


def methods_help(family: Family | None = None) -> str:
    return "; ".join(f"{name}: {_REGISTRY[name].summary}" for name in list_methods(family))


def _direct(run: "RunConfig", learned: bool) -> "DirectConfig":
    from .direct import DirectConfig

    options = dict(
        time_steps=run.time_steps,
        tau=run.tau,
        threshold=run.threshold,
        alpha=run.alpha,
        reset=run.reset,
        surrogate=run.surrogate,
        steepness=run.steepness,
        neuron=run.neuron,
        tau_syn=run.tau_syn,
    )
    if learned:
        return DirectConfig.asgl(
            spike_noise_p=run.spike_noise_p,
            noise_decay=run.noise_decay,
            noise_milestones=tuple(run.noise_milestones),
            **options,
        )
    return DirectConfig.surrogate_gradient(**options)


_DIRECT = (
    "time_steps", "tau", "threshold", "alpha", "steepness", "reset", "surrogate", "width_lr", "neuron", "tau_syn",
)  # fmt: skip

register_method(Method("float", "float", "the ReLU network (pre-training; the source of every other method)"))
register_method(
    Method(
        "na",
        "conversion",
        "Noise Adaptor: uniform noise U(-0.5, 0.5) before rounding in training",
        ("p",),
        quant=lambda run: QuantConfig.noise_adaptor(p=run.p),
    )
)
register_method(
    Method(
        "no-noise",
        "conversion",
        "the same quantizer without noise (the paper's 'w/o NA')",
        ("p",),
        quant=lambda run: QuantConfig.no_noise(p=run.p),
    )
)
register_method(
    Method(
        "qcfs",
        "conversion",
        "QCFS clip-floor-shift with a learned threshold (Bu et al. 2022)",
        ("p",),
        quant=lambda run: QuantConfig.qcfs(p=run.p),
    )
)
register_method(
    Method(
        "clip",
        "conversion",
        "dual-phase's source ANN, clip(x, 0, theta) with a trainable theta",
        ("p",),
        quant=lambda run: QuantConfig.clip(p=run.p),
    )
)
register_method(
    Method(
        "dual-phase",
        "conversion",
        "dual-phase Phase I: QC-ANN with Bernoulli Quant-Noise, p = its T (Wang et al. 2023)",
        ("p", "quant_noise_p"),
        quant=lambda run: QuantConfig.dual_phase(p=run.p, quant_noise_p=run.quant_noise_p),
    )
)
register_method(
    Method(
        "asgl",
        "direct",
        "ASGL: LIF, spike noise through a random mask, learned surrogate width",
        (*_DIRECT, "spike_noise_p", "noise_decay", "noise_milestones"),
        direct=lambda run: _direct(run, learned=True),
        optimizer_preset=OptimizerConfig.asgl,
    )
)
register_method(
    Method(
        "sg",
        "direct",
        "plain surrogate gradient, fixed width (ASGL's baseline)",
        _DIRECT,
        direct=lambda run: _direct(run, learned=False),
        optimizer_preset=OptimizerConfig.asgl,
    )
)

METHOD_FIELDS = tuple(dict.fromkeys(f for m in _REGISTRY.values() for f in m.reads))
"""RunConfig fields that only some methods read."""
