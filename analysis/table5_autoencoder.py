#!/usr/bin/env python3
"""ASGL paper (004) Table 5 at CPU scale: image reconstruction on MNIST with a directly trained SNN,
surrogate gradient (SG: fixed width, pure spikes forward) vs ASGL (learned width, spike noise), over the
surrogate's initial alpha. PSNR and SSIM of the reconstructions by torchmetrics.

    python analysis/table5_autoencoder.py --data-dir ../shared/datasets --train-images 30000 --epochs 6 \
        --out docs/figures/table5_autoencoder.json

The paper's setting: the fully connected autoencoder 784-128-64-32-64-128-784 (`mlp_autoencoder`), 8 time
steps (a BatchNorm1d before each hidden neuron: without it layers 3-5 never fire and training stalls at
the mean image, see `mlp_autoencoder`), the surrogate h(x) = 1/2 tanh(alpha x) + 1/2 (here
`surrogate="sigmoid"` with `steepness=alpha`, i.e. width 2/alpha: the table's "width" alpha is the tanh's
steepness), MSE loss. The paper gives no
optimiser, epochs, spike-noise p or neuron settings for this task; here: Adam (lr 1e-3, no weight decay,
cosine), batch 128, LIF tau 2 with hard reset and threshold 1 (the library's ASGL defaults), ASGL's p = 0.5
fixed, analog input repeated every step, the reconstruction the sigmoid of the read-out layer's output
averaged over the steps (a non-spiking linear read-out, as regression SNNs use).
PSNR is per image (data range 1) and averaged; SSIM is torchmetrics' (Gaussian 11x11 window) on 28x28
images. SG and ASGL at one alpha share the seed, the initial weights and the data order.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from noiseadaptor import fit
from noiseadaptor.ann.models import mlp_autoencoder
from noiseadaptor.data import Reconstruction, get_dataset, spread_subset
from noiseadaptor.io.files import write_json
from noiseadaptor.snn.lif import DirectConfig, to_direct_snn
from noiseadaptor.training import OptimizerConfig
from noiseadaptor.training.reconstruct import reconstruction_loss, reconstruction_quality


def train_one(method: str, alpha: float, args, train_set, test_loader) -> dict:
    torch.manual_seed(args.seed)
    config = DirectConfig(
        time_steps=args.time_steps,
        surrogate="sigmoid",
        steepness=alpha,
        learn_alpha=method == "asgl",
        spike_noise_p=args.spike_noise_p if method == "asgl" else 1.0,
    )
    snn = to_direct_snn(mlp_autoencoder(), config)
    train = DataLoader(train_set, batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(args.seed))
    widths = []
    begin = time.time()
    history = fit(
        snn,
        train,
        args.epochs,
        optimizer=OptimizerConfig(kind="adam", lr=args.lr, weight_decay=0.0),
        criterion=reconstruction_loss,
        device="cpu",
        progress=False,
        on_epoch_end=lambda epoch, row: widths.append([n.alpha.item() for _, n in snn.neurons()]),
    )
    result = reconstruction_quality(snn, test_loader, (1, 28, 28), "cpu")
    result.update(
        method=method,
        alpha=alpha,
        train_loss=[row["train_loss"] for row in history],
        widths=widths,
        seconds=time.time() - begin,
    )
    print(
        f"[{method} alpha {alpha}] PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f} "
        f"(train MSE {history[-1]['train_loss']:.4f}, {result['seconds']:.0f} s)",
        flush=True,
    )
    return result


def table(results: list[dict], alphas) -> str:
    by = {(r["method"], r["alpha"]): r for r in results}
    lines = ["| alpha (tanh steepness) | PSNR SG | PSNR ASGL | SSIM SG | SSIM ASGL |", "|---|---|---|---|---|"]
    for a in alphas:
        cells = [by.get((m, a)) for m in ("sg", "asgl")]
        psnr = [f"{c['psnr']:.2f}" if c else "" for c in cells]
        ssim = [f"{c['ssim']:.3f}" if c else "" for c in cells]
        lines.append(f"| {a:g} | {' | '.join(psnr)} | {' | '.join(ssim)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, help="folder holding MNIST/raw (torchvision's layout)")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.5, 1.0, 2.5, 5.0])
    ap.add_argument("--methods", nargs="+", default=["sg", "asgl"], choices=["sg", "asgl"])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--time-steps", type=int, default=8)
    ap.add_argument("--spike-noise-p", type=float, default=0.5)
    ap.add_argument("--train-images", type=int, default=0, help="a spread subset of the training set (0: all)")
    ap.add_argument("--test-images", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/table5_autoencoder.json"))
    args = ap.parse_args()
    splits = get_dataset("mnist", args.data_dir)
    train_set = Reconstruction(spread_subset(splits.train, args.train_images or None), splits.stats)
    test_loader = DataLoader(
        Reconstruction(spread_subset(splits.test, args.test_images or None), splits.stats), batch_size=500
    )
    done = json.loads(args.out.read_text())["results"] if args.out.exists() else []  # resumes per cell
    for alpha in args.alphas:
        for method in args.methods:
            if any(r["method"] == method and r["alpha"] == alpha for r in done):
                continue
            done.append(train_one(method, alpha, args, train_set, test_loader))
            write_json({"settings": vars(args) | {"data_dir": str(args.data_dir), "out": str(args.out)},
                        "results": done}, args.out)  # fmt: skip
    print(table(done, args.alphas))


if __name__ == "__main__":
    main()
