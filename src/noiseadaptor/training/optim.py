"""How `fit` optimises: the optimiser as data, with each paper's convention as a preset.

Presets:
- Noise Adaptor (000, §5.1): SGD, momentum 0.9, cosine schedule, lr 0.05, weight decay 5e-4 (2.5e-5 on
  ImageNet), read as the paper writes it: a decay of the weights. The quantizer scales s are not decayed
  (`OptimizerConfig.noise_adaptor()`): s is a step size trained by its own normalised gradient
  (Algorithm 1), and decay pulls every threshold down whatever the loss says (about -14 % over three
  CIFAR epochs at lr 0.05 when the gradient is small). Weights, biases and BatchNorm are decayed.
- QCFS (the authors' code, ``train_ann``): SGD with weight decay on every parameter, the threshold lam
  included (the "qcfs" quantizer's s is lam/p: the same decay).
- Dual-phase (002): the source ANN by SGD, lr 0.1, weight decay 5e-4; Phase I fine-tunes at lr 1e-4
  (the authors' code: weight decay 0).
- ASGL (004 and Windere/ASGL-SNN ``split_params``): SGD (Adam for CIFAR-100) with weight decay on
  conv/linear weights only, none on biases and BatchNorm; the learned surrogate widths in a separate
  Adam, lr 3e-4, no decay, constant learning rate (`OptimizerConfig.asgl()`).
Surrogate widths are never weight-decayed: decay would pull them to zero whatever the loss says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..ann.quantizer import QuantReLU
from ..checks import positive_int
from ..snn.lif import LIFNeuron

Role = Literal["weight", "bias", "norm", "scale", "width"]
ROLES = ("weight", "bias", "norm", "scale", "width")
_NORMS = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


@dataclass(frozen=True)
class OptimizerConfig:
    """How `fit` optimises.

    kind: "sgd" (with `momentum`) or "adam", with a cosine schedule of `lr` over the epochs; with
        `restart_epochs` N > 0, a cyclic one (cosine annealing with warm restarts every N epochs, the ASGL
        paper's "cyclic cosine annealing", 004 A.3).
    weight_decay: applied to every parameter whose role is not in `no_decay`. Roles (`parameter_roles`):
        "weight" (conv/linear and other weights), "bias", "norm" (normalisation layers' affine
        parameters), "scale" (quantizer scales, i.e. thresholds), "width" (learned surrogate widths).
    width_optimizer: "main" trains the widths with the main optimiser; "adam" gives them their own Adam
        at `width_lr`, no decay and a constant learning rate (the ASGL authors' code).
    """

    kind: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    no_decay: tuple[str, ...] = ("width",)
    width_optimizer: Literal["main", "adam"] = "main"
    width_lr: float = 3e-4
    restart_epochs: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("sgd", "adam"):
            raise ValueError(f"OptimizerConfig.kind must be 'sgd' or 'adam', got {self.kind!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        roles = tuple(self.no_decay)
        if any(r not in ROLES for r in roles):
            raise ValueError(f"OptimizerConfig.no_decay names parameter roles {ROLES}; got {self.no_decay!r}")
        object.__setattr__(self, "no_decay", roles)  # a list from a JSON config becomes a tuple
        if self.width_optimizer not in ("main", "adam"):
            raise ValueError(f"OptimizerConfig.width_optimizer must be 'main' or 'adam', got {self.width_optimizer!r}")
        if not self.width_lr > 0:
            raise ValueError(f"width_lr must be positive, got {self.width_lr!r}")
        positive_int(self.restart_epochs, "restart_epochs", zero=True)

    @classmethod
    def noise_adaptor(cls, **kwargs) -> "OptimizerConfig":
        """Noise Adaptor's setting (paper 000, §5.1): weight decay on the weights, none on the scales s."""
        return cls(**{"no_decay": ("width", "scale"), **kwargs})

    @classmethod
    def asgl(cls, **kwargs) -> "OptimizerConfig":
        """The ASGL authors' setting: no decay on biases, normalisation and widths; widths by Adam 3e-4."""
        return cls(**{"no_decay": ("bias", "norm", "width"), "width_optimizer": "adam", **kwargs})


def parameter_roles(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Every parameter of `model` once, in `model.parameters()` order, with its role (see OptimizerConfig)."""
    found, seen = [], set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, LIFNeuron):
                role = "width"
            elif isinstance(module, QuantReLU):
                role = "scale"
            elif isinstance(module, _NORMS):
                role = "norm"
            else:
                role = "bias" if name == "bias" else "weight"
            found.append((role, param))
    return found


class _Optimizers:
    """The main optimiser and, when the widths have their own, that one: stepped and saved together."""

    def __init__(self, main: torch.optim.Optimizer, width: torch.optim.Optimizer | None):
        self.main, self.width = main, width

    @property
    def param_groups(self) -> list[dict]:  # load_state_dict replaces the main optimiser's list: never keep a copy
        return self.main.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in (self.main, self.width):
            if opt is not None:
                opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.main.step()
        if self.width is not None:
            self.width.step()

    def state_dict(self) -> dict:
        if self.width is None:
            return self.main.state_dict()
        return {"main": self.main.state_dict(), "width": self.width.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "main" in state and "width" in state:
            self.main.load_state_dict(state["main"])
            if self.width is not None:
                self.width.load_state_dict(state["width"])
        else:
            self.main.load_state_dict(state)


def build_optimizer(model: nn.Module, config: OptimizerConfig, epochs: int):
    """The optimiser(s) of `config` over `model`'s parameters and the cosine schedule of the main one."""
    roles = parameter_roles(model)
    own_widths = config.width_optimizer == "adam"
    groups = []
    for decayed in (True, False):  # each group keeps the model's parameter order (optimizer state is by index)
        params = [p for r, p in roles if (r not in config.no_decay) == decayed and not (own_widths and r == "width")]
        if params:
            groups.append({"params": params, "weight_decay": config.weight_decay if decayed else 0.0})
    if not groups:
        groups = [{"params": [], "weight_decay": 0.0}]
    if config.kind == "sgd":
        main = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    else:
        main = torch.optim.Adam(groups, lr=config.lr)
    widths = [p for r, p in roles if r == "width"]
    width = torch.optim.Adam(widths, lr=config.width_lr, weight_decay=0.0) if own_widths and widths else None
    if config.restart_epochs:
        schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(main, T_0=config.restart_epochs)
    else:
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(main, T_max=max(epochs, 1))
    return _Optimizers(main, width), schedule
