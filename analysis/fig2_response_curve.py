#!/usr/bin/env python3
"""Paper 000 Fig. 2: the measured response of one integrate-and-fire neuron (reset by subtraction,
half-threshold start) to a constant input, for T = 3, 6, 12 and a large T.

x axis: input accumulated over the T steps; y axis: spike count x threshold. As T grows the staircase
converges to clip(V, 0, T*threshold), the clipped ReLU that Noise Adaptor's expected activation equals
(Theorem 1). Also prints the largest gap to that line per T (half a threshold, so 1/(2T) of full scale).

    python analysis/fig2_response_curve.py --out docs/figures/fig2_response_curve.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from noiseadaptor import IFNeuron


def response(T: int, threshold: float = 1.0, points: int = 2001) -> tuple[torch.Tensor, torch.Tensor]:
    """Accumulated input V (from -0.5*T*theta to 1.5*T*theta) and spike count * theta after T steps."""
    accumulated = torch.linspace(-0.5 * T * threshold, 1.5 * T * threshold, points)
    neuron = IFNeuron(threshold)
    per_step = accumulated / T
    output = sum(neuron(per_step) for _ in range(T))
    return accumulated, output


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[3, 6, 12, 256])
    ap.add_argument("--out", type=Path, default=Path("docs/figures/fig2_response_curve.png"))
    args = ap.parse_args()
    fig, axes = plt.subplots(1, len(args.steps), figsize=(3.2 * len(args.steps), 3.2))
    print("T     max |count*theta - clip(V, 0, T*theta)|   relative to full scale T*theta")
    for ax, T in zip(axes, args.steps):
        v, out = response(T)
        ideal = v.clamp(0, T)
        ax.plot(v, ideal, color="0.6", linestyle="--", label="clip(V, 0, T·θ)")
        ax.plot(v, out, color="C0", label="IF neuron")
        ax.set_title(f"T = {T}")
        ax.set_xlabel("accumulated input V (θ)")
        gap = float((out - ideal).abs().max())
        print(f"{T:<5d} {gap:.3f} theta{'':25s} {gap / T:.2%}")
    axes[0].set_ylabel("spike count × θ")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
