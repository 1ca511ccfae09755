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

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal

from torch import nn

from .ann.preparation import prepare
from .ann.quantizer import QuantConfig, seed_noise
from .data.events import EVENT_DATASETS
from .snn.lif import DirectConfig, to_direct_snn
from .training.optim import OptimizerConfig

Family = Literal["float", "conversion", "direct"]


@dataclass(frozen=True)
class Method:
    """name: as the CLI, recipes and checkpoints spell it. summary: one line of help. reads: the RunConfig
    fields that only some methods use and this one does (giving another method's field is an error).
    quant / direct: the QuantConfig or DirectConfig of a run (one of them, by family). optimizer: the
    paper's optimiser for a run's lr, weight decay and optimizer kind. A `run` is a RunConfig, typed
    loosely: the registry sits below runconfig, which validates itself against it."""

    name: str
    family: Family
    summary: str
    reads: tuple[str, ...] = ()
    quant: Callable[[Any], QuantConfig] | None = None
    direct: Callable[[Any], DirectConfig] | None = None
    optimizer_preset: Callable[..., OptimizerConfig] = field(default=OptimizerConfig)

    def optimizer(self, run: Any) -> OptimizerConfig:
        return self.optimizer_preset(
            kind=run.optimizer,
            lr=run.lr,
            weight_decay=run.weight_decay,
            width_lr=run.width_lr,
            restart_epochs=run.restart_epochs,
        )

    @property
    def converts(self) -> bool:
        """Its trained network is a quantized ANN that `convert` turns into an IF network."""
        return self.family == "conversion"

    @property
    def spiking(self) -> bool:
        """Its trained network is an SNN already, run over its T steps (trained directly through time)."""
        return self.family == "direct"

    def build(self, model: nn.Module, run: Any) -> nn.Module:
        """The trainable network of `run` from its float `model`."""
        if self.family == "float":
            return model
        if self.family == "conversion":
            qmodel = prepare(model, self.quant(run))
            seed_noise(qmodel, run.seed)  # the noise draws apart from the data's stream
            return qmodel
        return to_direct_snn(model, self.direct(run), static_input=not run.event_input)

    def banner(self, run: Any) -> str:
        """Its settings that a training banner shows (", p=2", ", T=4")."""
        if self.family == "conversion":
            return f", p={self.quant(run).p}"
        return f", T={run.time_steps}" if self.family == "direct" else ""

    def epoch_hook(self, model: nn.Module) -> Callable[[int], None] | None:
        """What runs before each epoch of `model` (a direct SNN's spike-noise schedule), or None."""
        return model.start_epoch if self.spiking else None

    def check(self, run: Any) -> None:
        """Refuse a task or data set this method cannot train, with what to use instead."""
        events = run.dataset in EVENT_DATASETS
        if run.task == "reconstruct" and (self.converts or events):
            raise ValueError(
                "--task reconstruct trains a float or directly trained network (asgl, sg) on image data; "
                "conversion methods and event data classify"
            )
        if events and not self.spiking:
            raise ValueError(
                f"{run.dataset} is event data (frames over T steps): train it with a direct method "
                f"({', '.join(list_methods('direct'))})"
            )


_REGISTRY: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


QUANT_SETTINGS = ("p", "noise", "noise_amplitude", "scale_grad", "gradient_window", "quant_noise_p", "rounding")
"""QuantConfig fields a method's spelling may set (``qcfs[noise=uniform]``, ``na[p=4]``); p, when given,
replaces the run's p for that method alone (a study over p is a study over ``na[p=1] na[p=2] ...``)."""
OPTIMIZER_SETTINGS = ("scale_decay",)
"""Optimiser settings a spelling may set: scale_decay (true/false) decays the quantizer scales or not."""
_SPELLING = re.compile(r"^([a-z0-9-]+)(?:\[(.*)\])?$")


def get_method(name: str) -> Method:
    """The registered method `name`, or a variant of a quantization method spelled with its settings in
    brackets: ``na[scale_grad=numel,scale_decay=true]``, ``qcfs[noise=uniform]``,
    ``qcfs[gradient_window=clip]``, ``na[p=4]``. Keys: QUANT_SETTINGS and OPTIMIZER_SETTINGS. The variant's
    `name` is its canonical spelling: keys sorted, only those that differ from the preset
    (``na[scale_grad=batch]`` is ``na``); p, the run's unless given, stays whenever it is given."""
    match = _SPELLING.match(str(name).replace(" ", ""))
    base = match.group(1) if match else None
    if base not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(_REGISTRY)} (a quantization method "
                         "may take settings in brackets, e.g. 'qcfs[noise=uniform]')")  # fmt: skip
    if match.group(2) is None:
        return _REGISTRY[base]
    return _variant(_REGISTRY[base], _settings(name, match.group(2)), name)


def _settings(name: str, text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in (*QUANT_SETTINGS, *OPTIMIZER_SETTINGS):
            raise ValueError(f"method {name!r}: {item!r} is not KEY=VALUE with KEY one of "
                             f"{', '.join((*QUANT_SETTINGS, *OPTIMIZER_SETTINGS))}")  # fmt: skip
        if key in out:
            raise ValueError(f"method {name!r}: {key} given twice")
        out[key] = _value(value)
    return out


def _value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _preset_settings(method: Method) -> dict:
    """The settings of a quantization method's preset that a spelling may change (at p = 2)."""
    quant = method.quant(SimpleNamespace(p=2, quant_noise_p=0.1))
    return {**{k: getattr(quant, k) for k in QUANT_SETTINGS},
            "scale_decay": "scale" not in method.optimizer_preset().no_decay}  # fmt: skip


def _variant(base: Method, settings: dict, spelled: str) -> Method:
    if base.family != "conversion":
        raise ValueError(f"method {spelled!r}: only quantization methods take [key=value] settings")
    preset = _preset_settings(base)
    changed = {
        k: v
        for k, v in settings.items()
        if k == "p" or v != preset[k] or isinstance(v, bool) != isinstance(preset[k], bool)
    }
    if not changed:
        return base
    quant_changes = {k: v for k, v in changed.items() if k in QUANT_SETTINGS}
    decay = changed.get("scale_decay")
    if decay is not None and not isinstance(decay, bool):
        raise ValueError(f"method {spelled!r}: scale_decay is true or false, got {decay!r}")

    def quant(run) -> QuantConfig:
        return dataclasses.replace(base.quant(run), **quant_changes)

    def optimizer_preset(**kwargs) -> OptimizerConfig:
        config = base.optimizer_preset(**kwargs)
        if decay is None:
            return config
        kept = tuple(r for r in config.no_decay if r != "scale")
        return dataclasses.replace(config, no_decay=kept if decay else (*kept, "scale"))

    try:
        quant(SimpleNamespace(p=2, quant_noise_p=0.1))
    except (ValueError, TypeError) as err:
        raise ValueError(f"method {spelled!r}: {err}") from None
    name = f"{base.name}[{','.join(f'{k}={_text(v)}' for k, v in sorted(changed.items()))}]"
    summary = f"{base.name} with {', '.join(f'{k}={_text(v)}' for k, v in sorted(changed.items()))}"
    return dataclasses.replace(base, name=name, summary=summary, quant=quant, optimizer_preset=optimizer_preset)


def list_methods(family: Family | None = None) -> list[str]:
    return [name for name, m in _REGISTRY.items() if family is None or m.family == family]


def methods_help(family: Family | None = None) -> str:
    return "; ".join(f"{name}: {_REGISTRY[name].summary}" for name in list_methods(family))


def _direct(run: Any, learned: bool) -> DirectConfig:
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
        "Noise Adaptor: uniform noise U(-0.5, 0.5) before rounding in training (Algorithm 1)",
        ("p",),
        quant=lambda run: QuantConfig.noise_adaptor(p=run.p),
        optimizer_preset=OptimizerConfig.noise_adaptor,
    )
)
register_method(
    Method(
        "no-noise",
        "conversion",
        "the same quantizer without noise (the paper's 'w/o NA')",
        ("p",),
        quant=lambda run: QuantConfig.no_noise(p=run.p),
        optimizer_preset=OptimizerConfig.noise_adaptor,
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
