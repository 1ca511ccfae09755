#!/usr/bin/env python3
"""Paper 000 Table 3 at CPU scale: Noise Adaptor alone vs with negative spikes vs with two-stage offset
spikes (COS) vs with SRP's residual-membrane silencing (the other two-stage correction paper 000 cites), on
the same converted network.

Either trains the network here (CIFAR-style ResNet-20 on the embedded digits: float, then NA QAT), or
takes a QAT checkpoint written by fit() (e.g. by benchmarks/cifar10_noise_adaptor.py):

    python analysis/table3_corrections.py                                  # digits, a few minutes
    python analysis/table3_corrections.py --dataset cifar10 --checkpoint runs/cifar10-benchmark/na-seed0.pt \
        --data-dir ~/.cache/noiseadaptor/cifar10-jpeg --test-images 2000 --T 64

Offset-spike and SRP pre-simulation steps (--rho, --tau) are not counted in T, as in the COS and SRP papers;
the table says so (a T column is a T + rho or T + tau run). Their SOPs are counted in the energy, which is
printed both ways. --rows picks rows by name (default: all).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from noiseadaptor import QuantConfig, convert, evaluate, fit, init_scales, prepare, simulate
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset, spread_subset
from noiseadaptor.io.files import write_json
from noiseadaptor.io.report import accuracy_table, energy_table
from noiseadaptor.runconfig import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--model", default="cifar-resnet20")
    ap.add_argument("--checkpoint", type=Path, help="a QAT checkpoint (method and p are read from it)")
    ap.add_argument("--p", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=30, help="float and QAT epochs when training here")
    ap.add_argument("--test-images", type=int)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--rho", type=int, default=4, help="offset-spike pre-simulation steps")
    ap.add_argument("--tau", type=int, default=4, help="SRP pre-simulation steps (the SRP paper's CIFAR tau)")
    ap.add_argument("--rows", nargs="*", help="only these rows: none negative cos negative+cos srp negative+srp")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/table3-corrections.json"))
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    splits = get_dataset(args.dataset, args.data_dir)
    train, test = splits.loaders(64, eval_batch_size=500, seed=args.seed)
    if args.test_images:
        test = DataLoader(spread_subset(splits.test, args.test_images), batch_size=500)
    if args.checkpoint:
        loaded = load_run(
            args.checkpoint,
            model=args.model,
            num_classes=splits.num_classes,
            in_channels=splits.in_channels,
            method="na",
            p=args.p,
        )
        qmodel, method, p = loaded.model, loaded.config.method, loaded.config.p
    else:
        model = create_model(args.model, splits.num_classes, splits.in_channels)
        method, p = "na", args.p
        fit(model, train, args.epochs, progress=False)
        qmodel = prepare(model, QuantConfig(p=p))
        init_scales(qmodel, next(iter(train)))
        fit(qmodel, train, args.epochs, progress=False)
    snn = convert(qmodel)
    ann = evaluate(qmodel, test)
    variants = {
        "none": ("none", {}),
        "negative": ("negative spikes", {"negative_spikes": True}),
        "cos": (f"offset spikes (rho={args.rho})", {"offset_spikes": args.rho}),
        "negative+cos": ("negative + offset", {"negative_spikes": True, "offset_spikes": args.rho}),
        "srp": (f"SRP (tau={args.tau})", {"srp": args.tau}),
        "negative+srp": ("negative + SRP", {"negative_spikes": True, "srp": args.tau}),
    }
    unknown = sorted(set(args.rows or ()) - set(variants))
    if unknown:
        ap.error(f"--rows: unknown {unknown}; choose from {' '.join(variants)}")
    rows = {}
    for key, (name, options) in variants.items():
        if args.rows and key not in args.rows:
            continue
        result = simulate(snn, test, T=args.T, synops=True, progress=False, **options)
        rows[name] = {"ann_accuracy": ann, **result.row()}
        print(f"{name}: T=1 {100 * result.accuracy[1]:.2f}%  T={args.T} {100 * result.accuracy[args.T]:.2f}%")
    steps = [t for t in (1, 2, 4, 8, 16, 32, 64, 256) if t <= args.T]
    print(
        f"\n{args.dataset}, {args.model}, {method} p={p}, {len(test.dataset)} test images, seed {args.seed}; "
        "offset-spike and SRP pre-steps not counted in T\n"
    )
    print(accuracy_table(rows, steps))
    print("\nE_SNN / E_ANN per image, pre-steps counted (Eq. 20: analog first-layer MACs + SOPs * 0.9 pJ)")
    print(energy_table(rows, steps))
    print("\nthe same without the pre-steps, as the COS and SRP papers count")
    print(energy_table(rows, steps, pre_steps=False))
    print("\ncounted as the dual-phase paper does (002 Table 4: E_SNN = SOPs * 0.9 pJ only), pre-steps counted")
    print(energy_table(rows, steps, sops_only=True))
    write_json({"args": {k: str(v) for k, v in vars(args).items()}, "results": rows}, args.out)


if __name__ == "__main__":
    main()
