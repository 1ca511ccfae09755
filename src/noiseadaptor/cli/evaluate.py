"""`noiseadaptor evaluate`: a checkpoint's ANN accuracy and, converted, its SNN accuracy at every T."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..data import get_dataset
from ..data.events import event_dataset
from ..distributed import init_from_env, is_main
from ..methods import list_methods
from ..runconfig import load_run
from ..snn.calibrate import dual_phase_calibrate
from ..snn.conversion import convert
from ..snn.lif import accuracy_per_step
from ..snn.simulation import simulate
from ..training import evaluate
from .common import (
    check_positive,
    command_parser,
    common_args,
    correction_options,
    exit_args,
    output_folder,
    print_tables,
    row_label,
    show_progress,
    simulate_options,
    simulation_args,
    write_results,
)


def add_parser(commands) -> argparse.ArgumentParser:
    """`noiseadaptor evaluate`'s parser, added to the sub-command set `commands`."""
    p = command_parser(
        commands,
        "evaluate",
        help="ANN accuracy of a checkpoint and, if quantized, SNN accuracy per T",
        description="Rebuild the model of a train checkpoint, measure its ANN accuracy, "
        "convert it and simulate T = 1..--T.",
    )
    p.add_argument("checkpoint", type=Path, help="a checkpoint.pt written by train")
    p.add_argument("--data-dir", type=Path, help="override the data folder recorded in the checkpoint")
    p.add_argument("--batch-size", type=int, default=256, help="(default: %(default)s)")
    p.add_argument("--workers", type=int, default=0, help="data loader processes (default: %(default)s)")
    simulation_args(p)
    exit_args(p)
    phase2 = p.add_argument_group(
        "dual-phase Phase II: calibrate the SNN against its quantized ANN before "
        "simulating, layer by layer, on unlabelled training images"
    )
    phase2.add_argument(
        "--calibrate",
        default="none",
        choices=("none", "coarse", "fine", "both"),
        help="coarse: initial membrane in closed form (Eq. 16); fine: weights and initial "
        "membrane by BPTT (Eq. 17-19); both: coarse then fine (default: %(default)s)",
    )
    phase2.add_argument("--calibration-samples", type=int, default=256, help="(default: %(default)s)")
    phase2.add_argument(
        "--calibration-T",
        type=int,
        default=None,
        help="the T the calibration optimises for (default: --T; the paper calibrates at the "
        "T it reports, the p of a dual-phase checkpoint)",
    )
    phase2.add_argument(
        "--calibration-epochs",
        type=int,
        default=30,
        help="fine calibration passes over the samples per layer (default: %(default)s)",
    )
    phase2.add_argument(
        "--final-coarse",
        action="store_true",
        help="one more coarse pass over every layer at the end (the authors' script: coarse, fine, coarse)",
    )
    phase2.add_argument(
        "--select-images",
        type=int,
        default=0,
        help="with --final-coarse: keep the final pass only if it does not lower top-1 at the calibration T on "
        "this many labelled training images (the authors choose on the test set; 0: keep it, no selection; "
        "default: %(default)s)",
    )
    common_args(p, out=None)
    return p


def main(args: argparse.Namespace) -> int:
    check_positive(
        args,
        "T",
        "batch_size",
        "calibration_samples",
        "calibration_epochs",
        "select_images",
        allow_zero=("calibration_epochs", "select_images"),
    )
    args.out = output_folder(args.out or args.checkpoint.parent)  # refused now, not after the simulation
    if args.select_images and not args.final_coarse:
        raise ValueError("--select-images chooses whether to keep the final coarse pass: add --final-coarse")
    if args.calibration_T is not None:
        check_positive(args, "calibration_T")
    simulate_options(args)
    loaded = load_run(args.checkpoint)
    run, model = loaded.config, loaded.model
    if run.task == "reconstruct":
        raise ValueError(
            f"{args.checkpoint} is a reconstruction run: evaluate measures classification; its test PSNR and "
            "SSIM are in the run's results.json (noiseadaptor.training.reconstruct.reconstruction_quality from Python)"
        )
    device = init_from_env(args.device)
    data_dir = args.data_dir or run.data_dir
    splits = (
        event_dataset(run.dataset, data_dir, run.time_steps) if run.event_input else get_dataset(run.dataset, data_dir)
    )
    train_data, test_data = splits.loaders(args.batch_size, seed=args.seed, num_workers=args.workers)
    quantized = run.method_info.converts  # converted and simulated; others evaluated as trained
    start = time.time()
    name = row_label(run.method, correction_options(args)) + ("+phase2" if args.calibrate != "none" else "")
    if args.calibrate != "none" and not quantized:
        raise ValueError(
            f"--calibrate needs a quantized checkpoint ({', '.join(list_methods('conversion'))}); "
            f"this one is {run.method}"
        )
    if args.exit and not quantized:
        raise ValueError(f"--exit stops a converted network's images early; {run.method} is not converted")
    if not quantized and name != run.method:
        raise ValueError(f"--negative-spikes, --offset-spikes and --srp correct a converted network; {run.method} "
                         "is not converted (evaluate it without them)")  # fmt: skip
    if run.method_info.spiking:  # an SNN already: its accuracy read out after every step
        rows = {name: {"snn_accuracy": accuracy_per_step(model, test_data, device)}}
        title = f"directly trained SNN, T={run.time_steps}: at column t, its output summed over steps 1..t"
        return _report(args, run, rows, device, start, f"Top-1 accuracy (%) on {run.dataset} test, {run.model}, "
                       + title)  # fmt: skip
    rows = {name: {"ann_accuracy": evaluate(model.to(device), test_data, device, progress=show_progress(args))}}
    if quantized:
        snn = convert(model)
        if args.calibrate != "none":
            rows[name]["calibration"] = _phase2(args, snn, model, train_data)
        options = simulate_options(args)
        result = simulate(snn, test_data, T=args.T, device=device, progress=show_progress(args), **options)
        rows[name].update(result.row())
    p = run.method_info.banner(run) if quantized else ""  # ", p=2"
    title = f"Top-1 accuracy (%) on {run.dataset} test, {run.model}{p}"
    return _report(args, run, rows, device, start, title)


def _report(args: argparse.Namespace, run, rows: dict, device, start: float, title: str) -> int:
    if is_main():
        print_tables(rows, title)
        write_results(
            args.out,
            vars(args),
            rows,
            start,
            title=f"{run.model} on {run.dataset}",
            extra={"checkpoint": str(args.checkpoint), "checkpoint_config": run.to_dict(), "device": str(device)},
            name="evaluation",
        )
    return 0


def _phase2(args: argparse.Namespace, snn, qmodel, train_data) -> dict:
    T = args.calibration_T or args.T
    available = len(train_data.dataset)
    samples = min(args.calibration_samples, available)
    if samples < args.calibration_samples:
        print(f"noiseadaptor evaluate: warning: --calibration-samples {args.calibration_samples}: the training "
              f"split has {available} images; calibrating on all of them", file=sys.stderr)  # fmt: skip
    print(f"[phase II] {args.calibrate} calibration at T={T} on {samples} training images")
    report = dual_phase_calibrate(
        snn,
        qmodel,
        train_data,
        T=T,
        coarse=args.calibrate in ("coarse", "both"),
        fine=args.calibrate in ("fine", "both"),
        num_samples=samples,
        epochs=args.calibration_epochs,
        seed=args.seed,
        final_coarse=args.final_coarse,
        select_on=_labelled(train_data, args.select_images) if args.select_images else None,
    )
    if "selection" in report:
        chosen = report["selection"]
        print(
            f"  final coarse pass {'kept' if chosen['kept'] else 'undone'}: top-1 at T={T} on "
            f"{args.select_images} training images {100 * chosen['before']:.2f}% -> {100 * chosen['after']:.2f}%"
        )
    for layer, r in report.get("fine", {}).items():
        print(f"  {layer}: held-out KL {r['loss_before']:.3g} -> {r['loss_after']:.3g}")
    return {"T": T, "mode": args.calibrate, "samples": samples, **report}


def _labelled(data, n: int) -> list[tuple]:
    """The first `n` labelled training images of a fresh pass over `data`, as batches."""
    batches, have = [], 0
    for x, y in data:
        batches.append((x[: n - have], y[: n - have]))
        have += len(batches[-1][1])
        if have >= n:
            break
    return batches
