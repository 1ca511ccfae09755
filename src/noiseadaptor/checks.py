"""Checks every stage shares, so that one mistake gets one message wherever it is made."""

from __future__ import annotations

import itertools

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
