#!/usr/bin/env python3
"""The two hand-checkable cases of Eq. 20's synaptic operations (issue 14): a spike train into a pooled
linear layer, and a Flatten-first MLP whose first layer reads the analog input. Prints SOPs and MACs per
sample and the count by hand (spikes x fan-out).

    python analysis/sop_cases.py                        # this checkout
    git worktree add /tmp/old 867b6bd && python analysis/sop_cases.py --src /tmp/old/src   # the code before
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", help="import noiseadaptor from this folder (e.g. an older checkout's src)")
    args = ap.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    from noiseadaptor import QuantConfig, convert, init_scales, prepare, simulate

    torch.manual_seed(0)
    cases = [
        ("conv-relu-maxpool-flatten-linear", 3,
         nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3))),
        ("flatten-linear-relu-linear", 3, nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))),
    ]  # fmt: skip
    for name, fan_out, net in cases:
        x = torch.randn(16, 1, 4, 4)
        q = prepare(net, QuantConfig(p=2)).eval()
        init_scales(q, x)
        r = simulate(convert(q), [(x, torch.zeros(16, dtype=torch.long))], T=4, synops=True, progress=False)
        print(f"{name}: SOPs/sample {r.sops_per_sample[4]:.1f} (by hand: spikes x {fan_out} = "
              f"{fan_out * r.spikes_per_sample[4]:.1f}), MACs/sample {r.macs_per_sample[4]:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
