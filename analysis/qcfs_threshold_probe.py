#!/usr/bin/env python3
"""Why QCFS diverges at the Noise Adaptor recipe (RESULTS §1): the first SGD steps of QAT from the study's
float network, printing the loss and the range of the quantizer thresholds every 20 steps.

    OMP_NUM_THREADS=1 python analysis/qcfs_threshold_probe.py --data-dir ~/.cache/noiseadaptor/cifar10-jpeg
    ... --lr 0.01                       # all parameters at 0.01
    ... --scale-lr 0.005                # thresholds at 0.005, weights at --lr
    ... --start 8                       # QCFS's own start: every threshold 8 (after the L2 init's BatchNorm step)
    ... --method na                     # the same for Noise Adaptor
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from noiseadaptor import init_scales, prepare, quantizers
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset
from noiseadaptor.io.checkpoint import load_checkpoint, restore
from noiseadaptor.runconfig import RunConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--float-checkpoint", type=Path, default=Path("studies/compare-cifar10/float.pt"))
    ap.add_argument("--method", default="qcfs")
    ap.add_argument("--p", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--scale-lr", type=float, help="the thresholds' own lr (default: --lr)")
    ap.add_argument("--start", type=float, help="every threshold at this value instead of the L2 init")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    train, _ = get_dataset("cifar10", args.data_dir).loaders(128, seed=args.seed, num_workers=0)
    model = create_model("cifar-resnet20", 10, 3)
    restore(load_checkpoint(args.float_checkpoint), model, rng=False)
    run = RunConfig(method=args.method, p=args.p)
    q = prepare(model, run.method_info.quant(run))
    batches = iter(train)
    init_scales(q, next(batches))
    scales = [m.scale for _, m in quantizers(q)]
    if args.start is not None:
        for s in scales:
            s.data.fill_(args.start / args.p)  # threshold p * s
    others = [p for p in q.parameters() if all(p is not s for s in scales)]
    groups = [{"params": others}, {"params": scales, "lr": args.scale_lr or args.lr}]
    opt = torch.optim.SGD(groups, lr=args.lr, momentum=0.9, weight_decay=5e-4)
    q.train()
    begin = time.time()
    for step in range(args.steps):
        x, y = next(batches)
        loss = F.cross_entropy(q(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == args.steps - 1:
            thresholds = [args.p * s.item() for s in scales]
            print(f"{args.method} step {step}: loss {loss.item():.3f}, thresholds {min(thresholds):.3f} .. "
                  f"{max(thresholds):.3f} ({time.time() - begin:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
