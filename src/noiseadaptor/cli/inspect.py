"""`noiseadaptor inspect`: pictures of what a converted checkpoint's neurons do (noiseadaptor.plot)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from .. import plot
from ..data import get_dataset
from ..distributed import init_from_env
from ..io.files import write_json
from ..methods import list_methods
from ..runconfig import load_run
from ..snn.conversion import convert
from ..snn.recording import record
from ..snn.simulation import simulate
from .common import check_positive, command_parser, common_args, output_folder, show_progress

FIGURES = ("raster", "traces", "firing_rates", "conversion_error")

EPILOG = """\
writes into --out:
  raster.png            spikes of the recorded neurons of every layer, test image --image, steps 1..T
  traces.png            membrane potentials (u / threshold) of three recorded neurons per layer
                        (those that fire nearest half the steps)
  firing_rates.png      firing rate of every layer against T, over the first --images test images
  conversion_error.png  every layer's |SNN rate - quantized ANN activation| / threshold against T
  inspect.json          the data of the four figures

example:
  noiseadaptor inspect noiseadaptor-run/qat/na-seed0.pt --image 0 --T 8 --out inspect-na
"""


def add_parser(commands) -> argparse.ArgumentParser:
    """`noiseadaptor inspect`'s parser, added to the sub-command set `commands`."""
    p = command_parser(
        commands,
        "inspect",
        help="spike raster, membrane traces, firing rate and conversion error per layer of a checkpoint",
        description="Convert a quantized checkpoint and draw what its neurons do: for one test image, the "
        "spikes and membrane potentials of every layer over T steps; over the first test images, each "
        "layer's firing rate and conversion error against T.",
        epilog=EPILOG,
    )
    p.add_argument("checkpoint", type=Path, help="a checkpoint.pt of a converting method (train, run or compare)")
    p.add_argument("--image", type=int, default=0, help="index of the test image to record (default: %(default)s)")
    p.add_argument("--T", type=int, default=8, help="time steps (default: %(default)s)")
    p.add_argument("--neurons", type=int, default=64, help="neurons recorded per layer (default: %(default)s)")
    p.add_argument(
        "--images", type=int, default=256, help="test images for the per-layer curves (default: %(default)s)"
    )
    p.add_argument("--data-dir", type=Path, help="override the data folder recorded in the checkpoint")
    common_args(p, out=None, seed=False)
    return p


def main(args: argparse.Namespace) -> int:
    check_positive(args, "T", "neurons", "images", "image", allow_zero=("image",))
    args.out = output_folder(args.out or args.checkpoint.parent / "inspect")
    run = load_run(args.checkpoint)
    if not run.config.method_info.converts:
        raise ValueError(f"{args.checkpoint} holds a {run.config.method} network, which is not converted; inspect "
                         f"draws converted ones ({', '.join(list_methods('conversion'))})")  # fmt: skip
    if run.config.event_input:
        raise ValueError("inspect reads image data sets; this checkpoint was trained on event data")
    test = get_dataset(run.config.dataset, args.data_dir or run.config.data_dir).test
    if args.image >= len(test):
        name, last = run.config.dataset, len(test) - 1
        raise ValueError(f"--image {args.image}: the {name} test split has {len(test)} images (0..{last})")
    device = init_from_env(args.device)
    qmodel = run.model.to(device).eval()
    snn = convert(qmodel)
    image, label = test[args.image]
    recording = record(snn, image, T=args.T, per_layer=args.neurons)
    images = Subset(test, range(min(args.images, len(test))))
    result = simulate(snn, DataLoader(images, batch_size=128), T=args.T, device=device,
                      progress=show_progress(args), reference=qmodel)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    figures = {
        "raster": plot.raster(recording),
        "traces": plot.traces(recording),
        "firing_rates": plot.firing_rates(result),
        "conversion_error": plot.conversion_error(result),
    }
    for name, figure in figures.items():
        figure.savefig(args.out / f"{name}.png", dpi=120)
    predicted = recording.prediction()
    write_json(
        {
            "checkpoint": str(args.checkpoint),
            "image": args.image,
            "label": int(label),
            "T": args.T,
            "prediction_per_step": predicted.tolist(),
            "recorded_neurons": {k: v.tolist() for k, v in recording.neurons.items()},
            "spikes": {k: v.tolist() for k, v in recording.spikes.items()},
            "membrane": {k: v.tolist() for k, v in recording.membrane.items()},
            "layer_size": recording.size,
            "images": len(images),
            "firing_rate": result.firing_rate,
            "layer_error": result.layer_error,
            "accuracy": result.accuracy,
        },
        args.out / "inspect.json",
    )
    _summary(args, recording, result, int(label), predicted)
    return 0


def _summary(args, recording, result, label: int, predicted: torch.Tensor) -> None:
    T = args.T
    print(f"test image {args.image} (label {label}): predicted {predicted[-1].item()} after {T} steps; "
          f"per step: {' '.join(map(str, predicted.tolist()))}")  # fmt: skip
    print(f"\n{'layer':<24}{'neurons':>9}{'recorded':>9}{'spikes':>9}{'rate@T':>9}{'error@T':>9}")
    for layer in recording.layers:
        spikes = int(recording.spikes[layer].abs().sum())
        print(f"{layer:<24}{recording.size[layer]:>9}{len(recording.neurons[layer]):>9}{spikes:>9}"
              f"{result.firing_rate[T][layer]:>9.3f}"
              f"{result.layer_error[T][layer]:>9.3f}")  # fmt: skip
    print(
        f"(spikes: of the recorded neurons, image {args.image}; rate and error at T={T}: over the first "
        f"{result.num_samples} test images)"
    )
    print(f"SNN accuracy on those images at T={T}: {100 * result.accuracy[T]:.2f} %")
    print(f"wrote {', '.join(f + '.png' for f in FIGURES)} and inspect.json to {args.out}")
