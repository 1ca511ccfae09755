#!/usr/bin/env python3
"""Paper 002 (dual-phase conversion) at CPU scale: the ablation of its Fig. 5, the calibration-sample
sweep of its Table 3, and Noise Adaptor side by side, all from one float network.

For each T: the float network's copy as a QC-ANN with T levels (prepare + thresholds by weight-threshold
balancing at the 99.5th percentile of each layer's activation, the paper's route 2 as the authors' code
runs it, or --thresholds l2 for Noise Adaptor's layer-wise L2 fit; no training: "copy weights"),
Phase I (that QC-ANN fine-tuned with Bernoulli Quant-Noise at the paper's lr 1e-4), and each of them
converted and calibrated by Phase II (coarse then fine), plus Phase I with coarse calibration only.
Every SNN is simulated for exactly the T it was built for. Then, at --sweep-T, Phase I + Phase II with
0, 16, 64, 256, 1024 calibration samples. Last, Noise Adaptor (p=2) trained from the same float net for
the same epochs, simulated at every T, and calibrated by Phase II for each T.

    python analysis/dual_phase_ablation.py --float-checkpoint runs/cifar10-benchmark/float.pt \\
        --data-dir ~/.cache/noiseadaptor/cifar10-jpeg            # about an hour on 2 CPU cores

The float checkpoint is benchmarks/cifar10_noise_adaptor.py's (CIFAR ResNet-20, 6 epochs). Without
one, a float net is trained here (--float-epochs) and checkpointed; Phase I runs checkpoint each epoch,
so a killed run resumes.

--source clip takes the paper's route instead of starting each QC-ANN from the ReLU net: the float net
is first trained for --epochs as the clip source ANN (clip(x, 0, theta), trainable theta), and each
QC-ANN ("copy weights") is that network requantized to T levels with its thresholds kept; Phase I
then fine-tunes it at --phase1-lr (the paper: 1e-4).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from noiseadaptor import QuantConfig, convert, evaluate, fit, init_scales, prepare, requantize, simulate
from noiseadaptor.ann.calibrate import balance_thresholds
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset, spread_subset
from noiseadaptor.io.checkpoint import load_checkpoint, restore
from noiseadaptor.io.files import write_json
from noiseadaptor.io.report import plot_accuracy
from noiseadaptor.snn.calibrate import collect_samples, dual_phase_calibrate
from noiseadaptor.training import TrainingDiverged


def quant_noise(T: int) -> float:
    """The paper's CIFAR-10 setting: pass-through probability 0.1 for T <= 4, no noise above."""
    return 0.1 if T <= 4 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--model", default="cifar-resnet20")
    ap.add_argument("--float-checkpoint", type=Path)
    ap.add_argument("--float-epochs", type=int, default=6)
    ap.add_argument("--T", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    ap.add_argument("--epochs", type=int, default=1, help="Phase I (and NA) QAT epochs")
    ap.add_argument("--lr", type=float, default=0.05, help="QAT learning rate of Noise Adaptor and the clip source")
    ap.add_argument(
        "--source",
        choices=("relu", "clip"),
        default="relu",
        help="what each QC-ANN starts from: the float ReLU net, or a clip source ANN trained from it",
    )
    ap.add_argument(
        "--phase1-lr",
        type=float,
        default=1e-4,
        help="Phase I learning rate (default: the paper's %(default)s; the threshold gradient of the "
        "authors' NoisyQC is an unnormalised sum, and at lr 0.05 it drives thresholds negative)",
    )
    ap.add_argument(
        "--thresholds",
        choices=("percentile", "l2"),
        default="percentile",
        help="QC-ANN thresholds from the ReLU net: 99.5th percentile (paper) or the L2 fit",
    )
    ap.add_argument("--samples", type=int, default=256, help="Phase II calibration samples")
    ap.add_argument("--calibration-epochs", type=int, default=5)
    ap.add_argument("--sweep-T", type=int, default=4)
    ap.add_argument("--sweep", type=int, nargs="+", default=[0, 16, 64, 256, 1024])
    ap.add_argument("--test-images", type=int, default=1000)
    ap.add_argument("--train-images", type=int, default=0, help="a spread subset of the training set (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/dual-phase-cifar10"))
    ap.add_argument("--report", action="store_true", help="only print the tables and plot from --out/results.json")
    args = ap.parse_args()
    if args.report:
        report(json.loads((args.out / "results.json").read_text()), args)
        return
    start = time.time()
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(args.seed)
    splits = get_dataset(args.dataset, args.data_dir)
    if args.train_images:  # a network too large for a CPU epoch: a spread subset (every class) of the images
        splits = dataclasses.replace(splits, train=spread_subset(splits.train, args.train_images))
    train, _ = splits.loaders(128, seed=args.seed)
    test = DataLoader(spread_subset(splits.test, args.test_images), batch_size=500)
    calibration = collect_samples(train, max(args.sweep + [args.samples]))  # unlabelled training images
    model = create_model(args.model, splits.num_classes, splits.in_channels)
    if args.float_checkpoint:
        restore(load_checkpoint(args.float_checkpoint), model, rng=False)
    else:
        fit(model, train, args.float_epochs, lr=0.1, checkpoint=args.out / "float.pt", resume=True)
    settings = {k: str(v) for k, v in vars(args).items() if k != "report"}
    where = ("out", "data_dir", "float_checkpoint")  # locations, not settings: a moved study still resumes
    saved = args.out / "results.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    same = {k: v for k, v in results.get("args", {}).items() if k not in where} == {
        k: v for k, v in settings.items() if k not in where
    }
    if not same:  # a rerun with the same settings keeps what was measured
        results = {"args": settings, "float": evaluate(model, test), "ablation": {}, "sweep": {}, "na": {}}
    print(f"float ANN {100 * results['float']:.2f}% on {len(test.dataset)} test images")

    def qat(config: QuantConfig, name: str, start=None, lr: float = args.lr, thresholds: str = "l2"):
        """(the starting QC-ANN, it after QAT): from the float net with fitted scales ("l2") or balanced
        thresholds ("percentile"), or from `start` requantized to `config` (thresholds kept)."""
        torch.manual_seed(args.seed)
        if start is None:
            q = prepare(copy.deepcopy(model), config)
            if thresholds == "percentile":
                balance_thresholds(q, next(iter(train))[0])
            else:
                init_scales(q, next(iter(train)))
        else:
            q = requantize(copy.deepcopy(start), config)
        copied = copy.deepcopy(q)
        fit(
            q,
            train,
            args.epochs,
            lr=lr,
            checkpoint=args.out / f"{name}.pt",
            resume=True,
            config={"method": name, "p": config.p, "seed": args.seed},
            progress=False,
        )
        return copied.eval(), q.eval()

    def snn_accuracy(q, T: int, phase2: str | None = None, samples: int = args.samples) -> float:
        snn = convert(q)
        if phase2 and samples:
            dual_phase_calibrate(
                snn,
                q,
                calibration,
                T=T,
                coarse=True,
                fine=phase2 == "both",
                num_samples=samples,
                epochs=args.calibration_epochs,
                seed=args.seed,
            )
        return simulate(snn, test, T=[T], progress=False, synops=False).accuracy[T]

    source = qat(QuantConfig.clip(), "clip-source")[1] if args.source == "clip" else None
    if source is not None and "clip source" not in results:
        results["clip source"] = evaluate(source, test)
        print(f"clip source ANN {100 * results['clip source']:.2f}%")
    for T in args.T:  # every T trains (or reloads) in order, so a rerun draws the same batches
        name = f"phase1-{args.source}-T{T}" if source is not None else f"phase1-{args.thresholds}-T{T}"
        copied, phase1 = qat(
            QuantConfig.dual_phase(p=T, quant_noise_p=quant_noise(T)), name, source, args.phase1_lr, args.thresholds
        )
        if str(T) not in results["ablation"]:
            row = {
                "copy weights": snn_accuracy(copied, T),
                "Phase I": snn_accuracy(phase1, T),
                "Phase II": snn_accuracy(copied, T, "both"),
                "Phase I + CC": snn_accuracy(phase1, T, "coarse"),
                "Phase I + II": snn_accuracy(phase1, T, "both"),
                "QC-ANN (copy)": evaluate(copied, test),
                "QC-ANN (Phase I)": evaluate(phase1, test),
            }
            results["ablation"][str(T)] = row
            print(
                f"T={T}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in row.items()) + f" ({time.time() - start:.0f} s)"
            )
        if T == args.sweep_T:
            for n in args.sweep:
                if str(n) not in results["sweep"]:
                    results["sweep"][str(n)] = snn_accuracy(phase1, T, "both", samples=n)
                    print(f"  N={n}: {100 * results['sweep'][str(n)]:.2f}")
        write_json(results, saved)

    try:
        _, na = qat(QuantConfig.noise_adaptor(p=2), "na-p2")
    except TrainingDiverged as err:  # a result (at this lr), not the end of the dual-phase rows
        print(f"Noise Adaptor p=2 diverged: {err}")
        results["na"], na = {"diverged": str(err)}, None
    if not results["na"]:
        na_result = simulate(convert(na), test, T=max(args.T), progress=False, synops=False)
        results["na"] = {"ann": evaluate(na, test), **{str(T): na_result.accuracy[T] for T in args.T}}
    for T in args.T if na is not None else []:  # Phase II composes with any converted network: NA's too
        if str(T) not in results.setdefault("na_phase2", {}):
            results["na_phase2"][str(T)] = snn_accuracy(na, T, "both")
            print(f"NA + Phase II, T={T}: {100 * results['na_phase2'][str(T)]:.2f}")
            write_json(results, saved)
    results["seconds"] = results.get("seconds", 0) + time.time() - start
    write_json(results, saved)
    report(results, args)


def report(results: dict, args: argparse.Namespace) -> None:
    """Markdown tables and accuracy_vs_T.png from results.json (keys are strings there)."""
    Ts, a = list(results["ablation"]), results["args"]  # the settings of the run that measured them
    header = "| | " + " | ".join(f"T={T}" for T in Ts) + " |\n|---|" + "---|" * len(Ts)
    phase1_lr = a["phase1_lr"] if a.get("phase1_lr") not in (None, "None") else a["lr"]  # older results: --lr
    route = (
        f"QC-ANNs from a clip source ANN ({100 * results['clip source']:.2f}%), Phase I lr {phase1_lr}"
        if "clip source" in results
        else f"QC-ANNs from the float net ({a.get('thresholds', 'l2')} thresholds), Phase I lr {phase1_lr}"
    )
    print(
        f"\nSNN top-1 (%), {a['model']} on {a['dataset']}, {a['test_images']} test images, seed {a['seed']}, "
        f"Phase I {a['epochs']} epoch(s), Phase II {a['samples']} samples; {route}\n" + header
    )
    for name in next(iter(results["ablation"].values())):
        print(f"| {name} | " + " | ".join(f"{100 * results['ablation'][T][name]:.2f}" for T in Ts) + " |")
    if "diverged" in results["na"]:
        print(f"| Noise Adaptor p=2 | diverged at lr {a['lr']} |")
    else:
        print(
            f"| Noise Adaptor p=2 (ANN {100 * results['na']['ann']:.2f}) | "
            + " | ".join(f"{100 * results['na'][T]:.2f}" for T in Ts)
            + " |"
        )
    if results.get("na_phase2"):
        print(
            "| Noise Adaptor p=2 + Phase II | " + " | ".join(f"{100 * results['na_phase2'][T]:.2f}" for T in Ts) + " |"
        )
    if results["sweep"]:
        print(
            f"\nPhase I + II at T={a['sweep_T']} by calibration samples N\n| N | "
            + " | ".join(str(n) for n in results["sweep"])
            + " |\n|---|"
            + "---|" * len(results["sweep"])
        )
        print("| SNN top-1 (%) | " + " | ".join(f"{100 * v:.2f}" for v in results["sweep"].values()) + " |")
    variants = [name for name in next(iter(results["ablation"].values())) if not name.startswith("QC-ANN")]
    curves = {name: {"snn_accuracy": {int(T): results["ablation"][T][name] for T in Ts}} for name in variants}
    if "diverged" not in results["na"]:
        curves["Noise Adaptor p=2"] = {"snn_accuracy": {int(T): results["na"][T] for T in Ts}}
    if results.get("na_phase2"):
        curves["Noise Adaptor p=2 + Phase II"] = {"snn_accuracy": {int(T): results["na_phase2"][T] for T in Ts}}
    curves["float"] = {"ann_accuracy": results["float"]}
    plot_accuracy(
        curves,
        args.out / "accuracy_vs_T.png",
        title=f"Dual-phase ablation, {a['model']} on {a['dataset']} (each SNN built for its T)",
    )
    print(f"wrote {args.out / 'accuracy_vs_T.png'}")


if __name__ == "__main__":
    main()
