"""One typed description of a training run: what `noiseadaptor train` parses into, what a recipe is (YAML
keys = the field names), what a checkpoint stores, and what `load_run` rebuilds from.

Flat, as torchvision's references keep their ``args`` in the checkpoint: one frozen `RunConfig`, its
fields grouped by what they describe (data, model, method, optimisation, run). Settings that only some
methods read are listed by each method in the registry (`noiseadaptor.methods`); the CLI flags and
their help are generated from the fields here.

Names: `time_steps` is the exact number of steps a directly trained SNN runs (the simulation's T, which
reports at every step up to it, is an evaluation option, not part of the run). The two noise
probabilities are two settings: `quant_noise_p` is dual-phase's probability that an element skips the
rounding; `spike_noise_p` is ASGL's probability that an element carries the true spike. Checkpoints of
earlier versions (keys ``T`` and ``noise_p``) load through `RunConfig.from_dict`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .ann.models import create_model
from .checks import checked_type, positive_int, positive_number, probability
from .io.checkpoint import load_checkpoint, restore
from .methods import METHOD_FIELDS, get_method
from .snn.surrogate import SHAPES
from .training.loop import non_finite


def setting(default, help: str, group: str = "", **extra):
    """A dataclass field with the help (and group, choices) its generated command-line flag shows."""
    return field(default=default, metadata={"help": help, "group": group, **extra})


@dataclass(frozen=True)
class RunConfig:
    # data
    dataset: str = setting("cifar10", "data set", "data")
    data_dir: str | None = setting(
        None, "data folder (default: $NOISEADAPTOR_DATA or ~/.cache/noiseadaptor/data)", "data"
    )
    download: bool = setting(False, "let torchvision download the data set (needs internet)", "data")
    augment: str = setting(
        "standard", "training augmentation for 32x32 data", "data", choices=("standard", "autoaugment", "none")
    )
    cutout: int = setting(0, "Cutout square side in pixels, 0 = off", "data")
    data_on_device: bool = setting(False, "hold CIFAR/MNIST whole on the GPU and augment there", "data")
    workers: int = setting(
        min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1),
        "data loader processes (the default: 4, or fewer on a machine with fewer CPUs for this process)",
        "data",
    )
    batch_size: int = setting(128, "per process", "data")
    task: str = setting(
        "classify",
        "classify (cross-entropy, top-1), or reconstruct: each image its own target, MSE of the sigmoid "
        "output, PSNR and SSIM (ASGL Table 5; model mlp-autoencoder)",
        "data",
        choices=("classify", "reconstruct"),
    )
    # model
    model: str = setting("cifar-resnet18", "architecture (noiseadaptor.ann.models.list_models())", "model")
    weights: str | None = setting(None, "torchvision pre-trained weights (DEFAULT, IMAGENET1K_V1, ...)", "model")
    init: str | None = setting(
        None,
        "start from this checkpoint: a float one, or a quantized one whose thresholds "
        "are kept (e.g. dual-phase from its clip source ANN)",
        "model",
    )
    # method
    method: str = setting("na", "training method", "method")
    p: int = setting(2, "quantization levels above zero; the SNN threshold is p*s (dual-phase: its T)", "method")
    quant_noise_p: float = setting(
        0.1, "dual-phase Quant-Noise: probability that an element skips the rounding", "method"
    )
    time_steps: int = setting(4, "steps the directly trained SNN runs", "method")
    tau: float | None = setting(None, "membrane time constant in steps, leak 1 - 1/tau (default: 2; clif 20)", "method")
    threshold: float = setting(1.0, "LIF firing threshold", "method")
    alpha: float = setting(
        1.0,
        "initial surrogate width a (slope 1/a at 0 for every shape; the rectangle's width of ASGL Tables 4/11)",
        "method",
    )
    steepness: float | None = setting(
        None,
        "instead of alpha, for the sigmoid surrogate: the paper's 1/2 tanh(steepness x) + 1/2 (ASGL Table 5: 2.5)",
        "method",
    )
    spike_noise_p: float = setting(
        0.5, "ASGL: probability that an element carries the true spike in training", "method"
    )
    noise_decay: float = setting(
        1.0,
        "ASGL schedule: at each milestone, spike_noise_p <- 1 - (1 - it) * this (1: fixed; CIFAR-100: 0.8)",
        "method",
    )
    noise_milestones: tuple[int, ...] = setting((), "0-based epochs where noise_decay applies", "method")
    reset: str = setting("hard", "LIF reset", "method", choices=("hard", "soft"))
    neuron: str = setting("lif", "direct training's neuron: lif, or clif (ASGL A.2's current-based LIF)", "method",
                          choices=("lif", "clif"))  # fmt: skip
    tau_syn: float | None = setting(None, "C-LIF synaptic time constant in steps, < tau (default 5)", "method")
    surrogate: str = setting("rectangular", "surrogate shape", "method", choices=SHAPES)
    # optimisation
    epochs: int = setting(400, "training epochs", "optimisation")
    lr: float = setting(0.05, "learning rate, cosine schedule", "optimisation")
    weight_decay: float = setting(5e-4, "weight decay (which parameters: the method's paper)", "optimisation")
    optimizer: str = setting("sgd", "main optimiser (SGD: momentum 0.9)", "optimisation", choices=("sgd", "adam"))
    width_lr: float = setting(3e-4, "ASGL: the surrogate widths' own Adam learning rate", "optimisation")
    restart_epochs: int = setting(
        0, "cyclic cosine schedule: restart every N epochs (ASGL A.3); 0 = one cosine over all epochs", "optimisation"
    )
    amp: bool = setting(False, "bfloat16 autocast", "optimisation")
    compile: bool = setting(False, "torch.compile the model", "optimisation")
    seed: int = setting(0, "random seed", "optimisation")
    # facts of the data set, recorded by train (not flags)
    num_classes: int | None = setting(None, "", "facts")
    in_channels: int | None = setting(None, "", "facts")
    image_size: int | None = setting(None, "", "facts")
    event_input: bool = setting(False, "", "facts")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # types first: a recipe's "no" is not false, a list not a name
            object.__setattr__(self, f.name, checked_type(f.name, getattr(self, f.name), f.type))
        object.__setattr__(self, "method", self.method_info.name)  # an unknown method fails here; one spelling
        for name in ("p", "time_steps", "batch_size"):
            positive_int(getattr(self, name), name)
        if self.method_info.converts:  # a spelling's own p ('na[p=4]') is the run's: recorded as trained
            object.__setattr__(self, "p", self.method_info.quant(self).p)
        for name in ("epochs", "cutout", "workers", "seed", "restart_epochs"):  # seed < 0: "random" elsewhere
            positive_int(getattr(self, name), name, zero=True)
        for name in ("quant_noise_p", "spike_noise_p"):
            probability(getattr(self, name), name)
        for name in ("lr", "width_lr", "tau", "tau_syn", "threshold", "alpha"):
            if getattr(self, name) is not None or name not in ("tau", "tau_syn"):
                positive_number(getattr(self, name), name)
        if isinstance(self.weight_decay, bool) or not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")
        object.__setattr__(self, "noise_milestones", tuple(self.noise_milestones))
        if (self.noise_decay != 1.0) != bool(self.noise_milestones):
            raise ValueError(
                "ASGL's noise schedule needs both noise_decay (zeta < 1) and noise_milestones; "
                "one alone changes nothing"
            )
        if self.init is not None and self.weights is not None:
            raise ValueError("give init (our float checkpoint) or weights (torchvision's), not both")

    @property
    def method_info(self):
        return get_method(self.method)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["noise_milestones"] = list(self.noise_milestones)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "RunConfig":
        """A RunConfig from a checkpoint's or recipe's dict; keys of earlier versions are translated (``T`` ->
        time_steps, ``noise_p`` -> quant_noise_p or spike_noise_p by method), other unknown keys refused."""
        values = dict(values)
        if "T" in values:
            values["time_steps"] = values.pop("T")
        if "noise_p" in values:
            noise = values.pop("noise_p")
            if noise is not None:
                key = "quant_noise_p" if values.get("method") == "dual-phase" else "spike_noise_p"
                values[key] = noise
        known = {f.name for f in dataclasses.fields(cls)}
        ignored = {"epochs_done", "optimization"}  # written beside the run description, not part of it
        unknown = sorted(set(values) - known - ignored)
        if unknown:
            raise ValueError(
                f"{source}: unknown keys {unknown}; the keys are RunConfig's fields, e.g. "
                f"{', '.join(sorted(known)[:8])}, ..."
            )
        given = {k: v for k, v in values.items() if k in known and v is not None}  # None: the default
        try:
            return cls(**given)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None


FACTS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("group") == "facts")
"""RunConfig fields train records from the data set, not settings (read again when a run resumes)."""


def checkpoint_run(config: dict, source: str, **unrecorded) -> RunConfig:
    """The RunConfig of a checkpoint's config: one written by `fit` without a method (a float network
    trained from Python or by a benchmark) is a float run; `unrecorded` gives settings its config lacks
    (e.g. model, num_classes, in_channels of a checkpoint written by `fit` from Python)."""
    return RunConfig.from_dict({"method": "float", **unrecorded, **config}, source=source)


def check_method_fields(method: str, given: set[str]) -> None:
    """Refuse settings, explicitly given, that `method` does not read (e.g. --spike-noise-p for na)."""
    info = get_method(method)
    foreign = sorted((given & set(METHOD_FIELDS)) - set(info.reads))
    if foreign:
        flags = ", ".join("--" + f.replace("_", "-") for f in foreign)
        raise ValueError(
            f"{flags}: not a setting of method {method}; it reads "
            f"{', '.join(info.reads) or 'none of the method settings'}"
        )


@dataclass
class LoadedRun:
    config: RunConfig
    model: nn.Module
    epoch: int
    metrics: dict


def build(run: RunConfig) -> nn.Module:
    """The untrained network of `run` (its facts num_classes and in_channels must be set)."""

    if run.num_classes is None or run.in_channels is None:
        raise ValueError("this run description does not record num_classes and in_channels (train fills them in)")
    model = create_model(run.model, run.num_classes, run.in_channels)
    return run.method_info.build(model, run)


def load_run(checkpoint: str | Path, **unrecorded) -> LoadedRun:
    """Rebuild a trained network from a checkpoint written by `noiseadaptor train`, `run` or `compare` (any
    version): its run description and the network with its weights. The one rebuild path of evaluate,
    export and Python. `unrecorded`: RunConfig settings the checkpoint does not record, for one written by
    `fit` from Python with a partial config (e.g. model="cifar-resnet18", num_classes=10, in_channels=3)."""

    state = load_checkpoint(checkpoint)
    missing = [key for key in ("config", "epoch", "model") if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(f"checkpoint {checkpoint} has no {' or '.join(missing)} entry: not one noiseadaptor wrote")
    run = checkpoint_run(state["config"], f"checkpoint {checkpoint}", **unrecorded)
    model = build(run)
    restore(state, model, rng=False)
    bad = non_finite(model)
    if bad:
        raise ValueError(
            f"checkpoint {checkpoint} holds non-finite weights or statistics ({len(bad)} tensors, first {bad[0]}): "
            "the run diverged; use an earlier checkpoint or retrain with a lower learning rate"
        )
    return LoadedRun(run, model, int(state["epoch"]), state.get("metrics", {}))
