"""`noiseadaptor check`: will a model convert, and what must change? (noiseadaptor.check)"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from ..ann.check import check
from ..ann.models import create_model, list_models
from ..runconfig import load_run
from .common import check_positive, command_parser

EPILOG = """\
MODEL is a model name (noiseadaptor's, e.g. cifar-resnet20, or any torchvision classifier, e.g.
mobilenet_v2), a checkpoint written by noiseadaptor (its float architecture is checked), or a file
holding a whole model saved with torch.save(model) (unpickled: only open files you trust).
Exit status: 0 when the model converts (with or without rewrites), 1 when it does not.

examples:
  noiseadaptor check resnet18
  noiseadaptor check mobilenet_v2          # ReLU6 becomes a quantizer: converts with rewrites
  noiseadaptor check convnext_tiny         # refused: LayerNorm, GELU (every one listed)
  noiseadaptor check my_model.pt --all     # every operation, not grouped
"""


def add_parser(commands) -> argparse.ArgumentParser:
    """`noiseadaptor check`'s parser, added to the sub-command set `commands`."""
    p = command_parser(
        commands,
        "check",
        help="list every operation of a model with its fate: kept, rewritten, or refused (and why)",
        description="Trace a model once, as prepare does, and list every operation with what conversion does "
        "to it: kept as is, rewritten (ReLU, ReLU6, clamp -> a quantizer; max-pool -> average pool), or "
        "refused, with the reason and what to use instead.",
        epilog=EPILOG,
    )
    p.add_argument("model", help="a model name, a noiseadaptor checkpoint, or a torch.save(model) file")
    p.add_argument(
        "--num-classes", type=int, default=10, help="classes of a model built by name (default: %(default)s)"
    )
    p.add_argument(
        "--in-channels", type=int, default=3, help="input channels of a model built by name (default: %(default)s)"
    )
    p.add_argument("--all", action="store_true", help="every operation on its own line, with where it is")
    return p


def main(args: argparse.Namespace) -> int:
    check_positive(args, "num_classes", "in_channels")
    model, name = _model(args)
    report = check(model, name)
    print(report)
    if args.all:
        print("\nevery operation:")
        for o in report.operations:
            print(f"  {o.fate:<9} {o.where:<40} {o.op}" + (f": {o.how}" if o.how and o.fate != "kept" else ""))
    return 0 if report.converts else 1


def _model(args: argparse.Namespace) -> tuple[nn.Module, str]:
    path = Path(args.model)
    if path.is_dir():
        raise ValueError(f"{path} is a folder: give a model file (a checkpoint or a torch.save(model) file) or a name")
    if path.is_file():
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # not a torch file: one line, not the unpickler's traceback
            raise ValueError(f"{path} is not a file torch.save wrote ({type(err).__name__}: {err})") from None
        if isinstance(loaded, nn.Module):
            return loaded, path.name
        if isinstance(loaded, dict) and "config" in loaded:
            run = load_run(path).config
            return _built(create_model, run.model, run.num_classes, run.in_channels), f"{run.model} ({path.name})"
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a model: save the whole model with "
                         "torch.save(model, path), or give a model name")  # fmt: skip
    key = args.model.lower().replace("_", "-")
    import torchvision

    torchvision_names = torchvision.models.list_models(module=torchvision.models)
    if key in list_models():
        return _built(create_model, key, args.num_classes, args.in_channels), key
    if args.model.lower() in torchvision_names:
        name = args.model.lower()
        return _built(torchvision.models.get_model, name, weights=None, num_classes=args.num_classes), args.model
    ours = ", ".join(list_models())
    raise ValueError(f"{args.model}: no such file, and not a model name (noiseadaptor's: {ours}; or a torchvision "
                     "classifier, torchvision.models.list_models(module=torchvision.models))")  # fmt: skip


def _built(builder, *args, **kwargs) -> nn.Module:
    """The model `builder` makes, its weights on the meta device (no memory: a check traces, it never
    computes), or in memory where the builder itself computes with tensors (RegNet's widths)."""
    try:
        with torch.device("meta"):
            return builder(*args, **kwargs)
    except (NotImplementedError, RuntimeError):
        return builder(*args, **kwargs)
