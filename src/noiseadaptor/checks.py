"""Checks every stage shares, so that one mistake gets one message wherever it is made."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn


def positive_int(value, name: str, *, zero: bool = False) -> int:
    """`value` when it is an integer >= 1 (>= 0 with `zero`); otherwise a ValueError naming `name`.
    A bool is refused (True is an int in Python, and never meant as a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        kind = "a non-negative" if zero else "a positive"
        raise ValueError(f"{name} must be {kind} integer, got {value!r}")
    return value


def probability(value, name: str, meaning: str = "") -> float:
    """`value` when it is a number in [0, 1]; otherwise a ValueError naming `name` (and what it is the
    probability of, `meaning`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1]{meaning}, got {value!r}")
    return value


def positive_number(value, name: str) -> float:
    """`value` when it is a number > 0; otherwise a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def module_device(module: nn.Module) -> torch.device:
    """Where a module's first parameter or buffer lives (the CPU for a module with neither)."""
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


_KINDS = {"str": ((str,), "text"), "int": ((int,), "a whole number"), "float": ((int, float), "a number"),
          "bool": ((bool,), "true or false")}  # fmt: skip


def checked_type(name: str, value, annotation: str):
    """`value` as a field annotated `annotation` ("int", "float | None", "tuple[int, ...]", ...) holds it,
    or a ValueError naming the field, the value and what it accepts: a recipe's ``amp: "no"``, ``method:
    [na]`` or ``noise_milestones: 5`` stop here, not deep inside a run."""
    kind = annotation.removesuffix(" | None")
    if value is None and kind != annotation:
        return value
    if kind.startswith("tuple["):
        item = kind.removeprefix("tuple[").removesuffix(", ...]")
        types, words = _KINDS[item]
        if isinstance(value, (list, tuple)) and all(isinstance(v, types) and not isinstance(v, bool) for v in value):
            return tuple(value)
        raise ValueError(f"{name} must be a list of {'whole numbers' if item == 'int' else 'names'}, got {value!r}")
    types, words = _KINDS[kind]
    if not isinstance(value, types) or (kind != "bool" and isinstance(value, bool)):
        raise ValueError(f"{name} must be {words}, got {value!r} ({type(value).__name__})")
    if kind == "float" and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if kind == "int" and abs(value) >= 2**63:
        raise ValueError(f"{name} must be below 2**63, got {value!r}")
    return value
