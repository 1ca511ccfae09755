#!/usr/bin/env python3
"""ASGL paper (004) Table 4 at CPU scale: robustness to the surrogate width alpha, surrogate gradient
(SG: fixed width, pure spikes forward) vs ASGL (learned width, spike noise with probability p), same
network, seed, optimizer and data. Also records the learned width of every layer after each epoch.

    python analysis/table4_asgl_width.py --out docs/figures/table4_asgl_width.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from noiseadaptor import evaluate, fit
from noiseadaptor.data import get_dataset
from noiseadaptor.direct import DirectConfig, to_direct_snn
from noiseadaptor.models import create_model
from noiseadaptor.report import write_json


def train_one(config: DirectConfig, args, splits) -> tuple[float, list[list[float]]]:
    torch.manual_seed(args.seed)
    train, test = splits.loaders(64, eval_batch_size=512, seed=args.seed)
    snn = to_direct_snn(create_model(args.model, splits.num_classes, splits.in_channels, width=args.width), config)
    widths: list[list[float]] = []
    fit(snn, train, args.epochs, lr=args.lr, progress=False,
        on_epoch_end=lambda epoch, row: widths.append([n.alpha.item() for _, n in snn.neurons()]))
    return evaluate(snn, test), widths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="small-cnn")
    ap.add_argument("--width", type=int, default=32, help="channels of the small CNN's first stage")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.5, 1.0, 2.5, 5.0, 10.0])
    ap.add_argument("--T", type=int, default=2)
    ap.add_argument("--p", type=float, default=0.5, help="ASGL noise probability")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/table4_asgl_width.png"))
    args = ap.parse_args()
    splits = get_dataset(args.dataset)

    results = {}
    for alpha in args.alphas:
        sg, _ = train_one(DirectConfig.surrogate_gradient(T=args.T, alpha=alpha), args, splits)
        asgl, widths = train_one(DirectConfig.asgl(T=args.T, alpha=alpha, noise_p=args.p), args, splits)
        results[alpha] = {"sg": sg, "asgl": asgl, "asgl_widths_per_epoch": widths}
        print(f"alpha={alpha:<5}  SG {100 * sg:6.2f}%   ASGL {100 * asgl:6.2f}%   learned widths "
              + " ".join(f"{w:.2f}" for w in widths[-1]))

    print(f"\n{args.dataset}, {args.model} (width {args.width}), T={args.T}, {args.epochs} epochs, "
          f"ASGL p={args.p}, seed {args.seed}: test accuracy (%)")
    print("| width alpha | " + " | ".join(f"{a:g}" for a in args.alphas) + " |")
    print("|---|" + "---|" * len(args.alphas))
    for method in ("sg", "asgl"):
        print(f"| {method.upper()} | " + " | ".join(f"{100 * results[a][method]:.2f}" for a in args.alphas) + " |")

    fig, axes = plt.subplots(1, len(args.alphas), figsize=(3 * len(args.alphas), 3), sharey=True)
    for ax, alpha in zip(axes, args.alphas):
        widths = torch.tensor(results[alpha]["asgl_widths_per_epoch"])
        for layer in range(widths.shape[1]):
            ax.plot(range(1, len(widths) + 1), widths[:, layer], label=f"layer {layer + 1}")
        ax.set_title(f"initial width {alpha:g}")
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
    axes[0].set_ylabel("learned width alpha")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    write_json({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, args.out.with_suffix(".json"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
