"""Checkpoints: one torch file (weights, optimizer, schedule, RNG states, the modules' own random
streams) and a JSON beside it (config, epoch, metrics) that a person can read. Both are written to a
temporary file and renamed, so a run killed while saving leaves the previous checkpoint intact; a run
restarted with `resume` loses at most the epoch in progress."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from torch import nn

from .files import atomic_path

FORMAT = "noiseadaptor-checkpoint-v1"
FREE_ON_RESUME = ("data_dir", "download", "workers", "data_on_device", "compile")
"""Settings of how data is read or a step is run, not of what is trained: a resumed run may change them."""


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    epoch: int,
    config: dict,
    optimization: dict | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    metrics: dict | None = None,
) -> None:
    path = Path(path)
    state = {
        "format": FORMAT,
        "epoch": epoch,
        "config": config,
        "optimization": optimization,
        "metrics": metrics or {},
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "modules": [source.state_dict() for source in _noise_sources(model)],
        },
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    with atomic_path(path.with_suffix(".json")) as tmp:
        Path(tmp).write_text(
            json.dumps(
                {
                    "format": FORMAT,
                    "epoch": epoch,
                    "config": config,
                    "optimization": optimization,
                    "metrics": metrics or {},
                },
                indent=2,
                default=str,
            )
        )


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint; ValueError with what to do when it is missing, corrupt or not ours."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated zip, pickle garbage, ...
        raise ValueError(
            f"checkpoint {path} is unreadable ({type(err).__name__}: {err}); it may be truncated. "
            "Delete it to start over, or point at another checkpoint"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a noiseadaptor checkpoint (expected format {FORMAT})")
    return state


def restore(
    state: dict,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    config: dict | None = None,
    rng: bool = True,
) -> int:
    """Load a checkpoint into live objects and return its epoch. With `config`, refuse a checkpoint whose
    recorded settings differ from it in any key both have (a different model, method or p would be
    resumed silently otherwise)."""
    if config is not None:
        clash = {
            k: (state["config"][k], v)
            for k, v in config.items()
            if k in state["config"] and state["config"][k] != v and k not in FREE_ON_RESUME
        }
        if clash:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in clash.items())
            raise ValueError(f"checkpoint was made with other settings ({detail}); use another --out or drop --resume")
    _load_weights(_unwrap(model), state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if rng:
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if state["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        for source, saved in zip(_noise_sources(model), state["rng"].get("modules", [])):
            source.load_state_dict(saved)
    return int(state["epoch"])


def _noise_sources(model: nn.Module) -> list:
    """The distinct random streams a model's modules draw from apart from the default generator (the
    quantizers' `noise_source`), in module order."""
    found = {}
    for module in _unwrap(model).modules():
        source = getattr(module, "noise_source", None)
        if source is not None:
            found.setdefault(id(source), source)
    return list(found.values())


def export_weights(model: nn.Module, path: str | Path, metadata: dict | None = None) -> None:
    """Weights alone as safetensors, for sharing (no pickled code). `metadata` is stored as one entry,
    "config", holding it as JSON with sorted keys (safetensors writes a metadata map in hash order, which
    would make two identical runs differ byte for byte): ``json.loads(safe_open(path, "pt").metadata()
    ["config"])`` reads it back."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in _unwrap(model).state_dict().items()}
    header = {"config": json.dumps(metadata, sort_keys=True)} if metadata else None
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=header)


def _load_weights(model: nn.Module, weights: dict) -> None:
    """load_state_dict with a short ValueError: the counts of missing and unexpected keys and a few of each
    (torch's own message lists every key, kilobytes for a ResNet)."""
    expected, given = set(model.state_dict()), set(weights)
    missing, unexpected = sorted(expected - given), sorted(given - expected)

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    if missing or unexpected:
        parts = [f"{len(missing)} missing ({few(missing)})"] if missing else []
        parts += [f"{len(unexpected)} unexpected ({few(unexpected)})"] if unexpected else []
        raise ValueError(
            f"checkpoint does not fit this model: {'; '.join(parts)} keys; was it made for another --model or method?"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:  # same keys, other shapes (e.g. another width or number of classes)
        shapes = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise ValueError(
            f"checkpoint does not fit this model: {len(shapes)} tensors differ in shape ({'; '.join(shapes[:2])})"
        ) from None


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
