#!/usr/bin/env python3
"""ASGL paper (004) Fig. 3d-e at CPU scale: while ASGL trains with a fixed spike-noise p, the accuracy of
the noisy network and of the SNN embedded in it (the same weights), and the mean cosine similarity S of
their layer outputs per sample (`noiseadaptor.snn.lif.noisy_similarity`), after every epoch.

    python analysis/fig3de_noisy_similarity.py --out docs/figures/fig3de_noisy_similarity.png

The paper measures S on CIFAR-10's training set with p = 0.8 and 0.5 and reports its mean and standard
deviation over samples; here the embedded digits (small CNN, T = 2, the ASGL authors' optimiser as in
analysis/table4_asgl_width.py), S on the training set, the accuracies on the test set. One seed: the
curve's shape, not an interval. The noise draws of each measurement come from a forked RNG, so the
training itself is the one an unmeasured run would do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch.utils.data import DataLoader

from noiseadaptor import fit
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset
from noiseadaptor.io.files import write_json
from noiseadaptor.snn.lif import DirectConfig, noisy_similarity, to_direct_snn
from noiseadaptor.training import OptimizerConfig


def run(p: float, args, splits) -> list[dict]:
    torch.manual_seed(args.seed)
    train, test = splits.loaders(64, eval_batch_size=512, seed=args.seed)
    train_eval = DataLoader(splits.train, batch_size=512)  # every training image, in order
    snn = to_direct_snn(
        create_model(args.model, splits.num_classes, splits.in_channels),
        DirectConfig.asgl(time_steps=args.T, spike_noise_p=p, alpha=args.alpha),
    )
    curve = []

    def measure(epoch: int, row: dict) -> None:
        on_train = noisy_similarity(snn, train_eval)
        on_test = noisy_similarity(snn, test)
        point = {"epoch": epoch + 1, "S_mean": on_train["mean"], "S_std": on_train["std"],
                 "snn_accuracy": on_test["snn_accuracy"], "noisy_accuracy": on_test["noisy_accuracy"]}  # fmt: skip
        curve.append(point)
        accuracies = f"SNN {100 * point['snn_accuracy']:.2f}%, noisy {100 * point['noisy_accuracy']:.2f}%"
        print(f"[p={p}] epoch {epoch + 1}: S {point['S_mean']:.3f} +- {point['S_std']:.3f}, {accuracies}", flush=True)

    measure(-1, {})  # before training
    fit(snn, train, args.epochs, optimizer=OptimizerConfig.asgl(lr=args.lr), progress=False, on_epoch_end=measure)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--model", default="small-cnn")
    ap.add_argument("--ps", type=float, nargs="+", default=[0.8, 0.5])
    ap.add_argument("--T", type=int, default=2)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/fig3de_noisy_similarity.png"))
    args = ap.parse_args()
    splits = get_dataset(args.dataset, args.data_dir)
    curves = {p: run(p, args, splits) for p in args.ps}
    fig, (acc, sim) = plt.subplots(1, 2, figsize=(10, 3.8))
    for p, curve in curves.items():
        epochs = [c["epoch"] for c in curve]
        line = acc.plot(epochs, [100 * c["snn_accuracy"] for c in curve], label=f"SNN, p={p}")[0]
        noisy = [100 * c["noisy_accuracy"] for c in curve]
        acc.plot(epochs, noisy, "--", color=line.get_color(), label=f"noisy, p={p}")
        mean, std = torch.tensor([c["S_mean"] for c in curve]), torch.tensor([c["S_std"] for c in curve])
        sim.plot(epochs, mean, color=line.get_color(), label=f"p={p}")
        sim.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="(d) noisy network vs embedded SNN")
    sim.set(xlabel="epoch", ylabel="S (mean over layers)", title="(e) cosine similarity, mean +- std")
    acc.legend(fontsize=8)
    sim.legend(fontsize=8)
    fig.suptitle(f"ASGL on {args.dataset}, {args.model}, T={args.T}, seed {args.seed}", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    write_json({"args": {k: str(v) for k, v in vars(args).items()}, "curves": curves}, args.out.with_suffix(".json"))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
