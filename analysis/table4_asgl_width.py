#!/usr/bin/env python3
"""ASGL paper (004) Table 4 at CPU scale (Table 12 with --surrogate dspike): robustness to the surrogate
width alpha, surrogate gradient (SG: fixed width, pure spikes forward) vs ASGL (learned width, spike noise
with probability p), same network, seed, optimizer and data. Also records the learned width of every
layer after each epoch. Both use the ASGL authors' optimiser (`OptimizerConfig.asgl`: SGD with weight
decay on conv/linear weights only, the widths by their own Adam at 3e-4, no decay).

    python analysis/table4_asgl_width.py --out docs/figures/table4_asgl_width.png

ASGL runs once with the noise probability fixed (zeta = 1) and once per other --zetas value with the
paper's schedule (p <- 1 - (1 - p) * zeta at 20, 40, 60, 80 and 95 % of the epochs, Appendix A.7).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from noiseadaptor import evaluate, fit
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset
from noiseadaptor.io.files import write_json
from noiseadaptor.snn.lif import DirectConfig, to_direct_snn
from noiseadaptor.training import OptimizerConfig

MILESTONE_FRACTIONS = (0.2, 0.4, 0.6, 0.8, 0.95)  # paper 004 A.7: epochs 20, 40, 60, 80, 95 of 100


def train_one(config: DirectConfig, args, splits) -> tuple[float, list[list[float]]]:
    torch.manual_seed(args.seed)
    train, test = splits.loaders(64, eval_batch_size=512, seed=args.seed)
    snn = to_direct_snn(create_model(args.model, splits.num_classes, splits.in_channels, width=args.width), config)
    widths: list[list[float]] = []
    fit(
        snn,
        train,
        args.epochs,
        optimizer=OptimizerConfig.asgl(lr=args.lr, width_lr=args.width_lr),
        progress=False,
        on_epoch_start=snn.start_epoch,
        on_epoch_end=lambda epoch, row: widths.append([n.alpha.item() for _, n in snn.neurons()]),
    )
    return evaluate(snn, test), widths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="small-cnn")
    ap.add_argument("--width", type=int, default=32, help="channels of the small CNN's first stage")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.5, 1.0, 2.5, 5.0, 10.0])
    ap.add_argument("--T", type=int, default=2)
    ap.add_argument(
        "--surrogate",
        default="rectangular",
        choices=["rectangular", "sigmoid", "dspike"],
        help="rectangular: Table 4/11; dspike: Table 12 (its alphas: 0.1 0.12 0.14 0.5 1 2.5)",
    )
    ap.add_argument("--p", type=float, default=0.5, help="ASGL noise probability (at the start)")
    ap.add_argument(
        "--zetas",
        type=float,
        nargs="+",
        default=[1.0, 0.5],
        help="ASGL noise decay: p <- 1 - (1 - p) * zeta at 20/40/60/80/95%% of the epochs (1: fixed p)",
    )
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--width-lr", type=float, default=3e-4, help="the widths' Adam learning rate (authors: 3e-4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/table4_asgl_width.png"))
    args = ap.parse_args()
    splits = get_dataset(args.dataset)
    milestones = tuple(sorted({min(max(round(f * args.epochs), 1), args.epochs - 1) for f in MILESTONE_FRACTIONS}))
    asgl_rows = [f"asgl zeta={z:g}" for z in args.zetas]

    results = {}
    for alpha in args.alphas:
        sg_config = DirectConfig.surrogate_gradient(time_steps=args.T, alpha=alpha, surrogate=args.surrogate)
        sg, _ = train_one(sg_config, args, splits)
        results[alpha] = {"sg": sg}
        for zeta, row in zip(args.zetas, asgl_rows):
            config = DirectConfig.asgl(
                time_steps=args.T,
                surrogate=args.surrogate,
                alpha=alpha,
                spike_noise_p=args.p,
                noise_decay=zeta,
                noise_milestones=milestones if zeta != 1 else (),
            )
            accuracy, widths = train_one(config, args, splits)
            results[alpha].update({row: accuracy, f"{row} widths per epoch": widths})
        print(
            f"alpha={alpha:<5}  "
            + "   ".join(f"{row} {100 * results[alpha][row]:6.2f}%" for row in ["sg", *asgl_rows])
            + "   learned widths "
            + " ".join(f"{w:.2f}" for w in results[alpha][f"{asgl_rows[0]} widths per epoch"][-1])
        )

    print(
        f"\n{args.dataset}, {args.model} (width {args.width}), {args.surrogate} surrogate, T={args.T}, "
        f"{args.epochs} epochs, "
        f"ASGL p={args.p} (decay at epochs {list(milestones)}), seed {args.seed}: test accuracy (%)"
    )
    print("| width alpha | " + " | ".join(f"{a:g}" for a in args.alphas) + " |")
    print("|---|" + "---|" * len(args.alphas))
    for row in ["sg", *asgl_rows]:
        print(
            f"| {row.upper() if row == 'sg' else 'ASGL, ' + row[5:]} | "
            + " | ".join(f"{100 * results[a][row]:.2f}" for a in args.alphas)
            + " |"
        )

    fig, axes = plt.subplots(
        len(asgl_rows), len(args.alphas), figsize=(3 * len(args.alphas), 3 * len(asgl_rows)), sharey=True, squeeze=False
    )
    for r, row in enumerate(asgl_rows):
        for ax, alpha in zip(axes[r], args.alphas):
            widths = torch.tensor(results[alpha][f"{row} widths per epoch"])
            for layer in range(widths.shape[1]):
                ax.plot(range(1, len(widths) + 1), widths[:, layer], label=f"layer {layer + 1}")
            ax.set_title(f"{row}, initial width {alpha:g}", fontsize=9)
            ax.set_xlabel("epoch")
            ax.set_yscale("log")
        axes[r][0].set_ylabel("learned width alpha")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    write_json(
        {"args": {k: str(v) for k, v in vars(args).items()}, "milestones": milestones, "results": results},
        args.out.with_suffix(".json"),
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
