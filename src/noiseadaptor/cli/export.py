"""`noiseadaptor export`: a quantized checkpoint as NIR (the SNN) or ONNX (the ANN); a directly trained SNN
as NIR."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..io.export import export_nir, export_onnx
from ..io.files import check_writable
from ..methods import list_methods
from ..runconfig import load_run
from ..snn.conversion import convert
from ..snn.integer import integer_network
from .common import command_parser


def add_parser(commands) -> argparse.ArgumentParser:
    """`noiseadaptor export`'s parser, added to the sub-command set `commands`."""
    p = command_parser(
        commands,
        "export",
        help="write a checkpoint's SNN as NIR, or a quantized ANN as ONNX",
        description="Rebuild a train checkpoint and write its SNN as a NIR graph (pip install noiseadaptor[nir]): "
        "a quantized run converted (IF neurons), a directly trained one as it is (LIF neurons); or a quantized "
        "ANN as ONNX. Read the semantics note in the README before running the file elsewhere.",
    )

    p.add_argument(
        "checkpoint",
        type=Path,
        help=f"a checkpoint.pt of a train run: quantized ({', '.join(list_methods('conversion'))}) or directly "
        f"trained ({', '.join(list_methods('direct'))}, --format nir)",
    )
    p.add_argument(
        "--format",
        default="nir",
        choices=("nir", "onnx"),
        help="nir: the SNN (IF neurons converted, or LIF neurons trained); onnx: the quantized ANN (default: "
        "%(default)s)",
    )
    p.add_argument("--input-shape", help="C,H,W of one input (default: from the checkpoint's data set)")
    p.add_argument("--out", type=Path, help="output file (default: model.nir or model.onnx beside the checkpoint)")
    p.add_argument(
        "--primitives",
        action="store_true",
        help="nir: each IF neuron as I -> Threshold with a recurrent Scale(-threshold) edge (no IF node; README)",
    )
    p.add_argument(
        "--weight-bits",
        type=int,
        help="nir: an integer network: B-bit integer weights, integer biases, thresholds and pre-charges, one "
        "unit per neuron layer (noiseadaptor.snn.integer; the file records B, each layer's integer weight "
        "multiplier and each neuron layer's unit)",
    )
    p.add_argument(
        "--dt",
        type=float,
        default=1e-4,
        help="nir, LIF neurons: one step's length in the file's time unit; each node's tau is tau * dt and r is "
        "tau (default: %(default)s, the step snnTorch's reader assumes)",
    )
    return p


def main(args) -> int:
    """`noiseadaptor export`: rebuild the checkpoint's quantized model and write it as NIR or ONNX."""
    loaded = load_run(args.checkpoint)
    run, model = loaded.config, loaded.model
    spiking = run.method_info.spiking  # a directly trained SNN: written as it is
    if not (run.method_info.converts or spiking):
        raise ValueError(
            f"{args.checkpoint} is a '{run.method}' run; export needs a quantized one "
            f"({', '.join(list_methods('conversion'))}) to convert, or a directly trained SNN "
            f"({', '.join(list_methods('direct'))})"
        )
    if spiking and (args.format != "nir" or args.primitives or args.weight_bits is not None):
        raise ValueError(f"a directly trained SNN ({run.method}) is written as NIR LIF nodes: --format nir, without "
                         "--primitives or --weight-bits (they rewrite IF neurons)")  # fmt: skip
    out = _output_file(args.out or args.checkpoint.parent / f"model.{args.format}", args.format)
    if args.input_shape:
        shape = _shape(args.input_shape)
    elif run.image_size:
        shape = (run.in_channels, run.image_size, run.image_size)
    else:  # checkpoints written before train recorded the image size
        raise ValueError(f"{args.checkpoint} does not record its input size: give --input-shape C,H,W")
    sample = torch.zeros(1, *shape) if not (spiking and run.event_input) else torch.zeros(1, run.time_steps, *shape)
    try:
        with torch.no_grad():
            model.eval()(sample)
    except RuntimeError as err:
        given = ",".join(map(str, shape))
        raise ValueError(
            f"--input-shape {given} does not fit this network ({str(err).splitlines()[0][:160]}); "
            "give C,H,W of one input as it was trained"
        ) from None
    if args.primitives and args.format != "nir":
        raise ValueError("--primitives applies to --format nir (the SNN's neurons)")
    if args.weight_bits is not None and args.format != "nir":
        raise ValueError("--weight-bits applies to --format nir (the SNN); the ONNX file is the float-weight ANN")
    if spiking:
        export_nir(model.eval(), sample, out, dt=args.dt)
    elif args.format == "nir":
        snn = convert(model.eval())
        if args.weight_bits is not None:
            snn, _ = integer_network(snn, args.weight_bits, sample)
        export_nir(snn, sample, out, primitives=args.primitives)
    else:
        export_onnx(model, sample, out)
    print(f"wrote {out}")
    return 0


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ValueError(f"--input-shape {text}: expected C,H,W of one input, positive integers (e.g. 3,32,32)")
    return shape


def _output_file(path: Path, suffix: str) -> Path:
    """`path` as the file to write: refused, before any work, when it is a folder or lies under a file, or
    cannot be written (check_writable)."""
    check_writable(path)
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give the file to write (e.g. {path / ('model.' + suffix)})")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"--out {path}: {parent} is a file, not a folder")
    check_writable(path.parent)
    return path
