#!/usr/bin/env python3
"""SNN accuracy at every T of one converted network as float and as integer networks of 8, 6 and 4-bit weights
(`noiseadaptor.snn.integer.integer_network`: integer weights, biases, thresholds and pre-charges on one unit
per neuron layer, what `export --weight-bits B` writes): the numbers an integer chip would give for the
network of docs/RESULTS.md section 2.

    OMP_NUM_THREADS=1 python analysis/weight_bits.py --dataset cifar10 --checkpoint runs/cifar10-benchmark/na-seed0.pt \
        --data-dir ~/.cache/noiseadaptor/cifar10-jpeg --test-images 1000 --T 64
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from noiseadaptor import convert, evaluate, simulate
from noiseadaptor.data import get_dataset, spread_subset
from noiseadaptor.io.files import write_json
from noiseadaptor.io.report import accuracy_table
from noiseadaptor.runconfig import load_run
from noiseadaptor.snn.integer import integer_network


def check_file(net, test, images: int, path: Path) -> dict:
    """The integer network exported with --primitives, the file run in nirtorch beside `net` (16 steps)."""
    from noiseadaptor import interop
    from noiseadaptor.io.export import export_nir

    x = next(iter(DataLoader(spread_subset(test.dataset, images), batch_size=images)))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # export's note on IF semantics (the primitive file has no IF node)
        export_nir(net, x[:1], path, primitives=True)
    found = interop.compare_with_file(net, path, x, steps=16)
    worst = max(found["spikes_differing"].values())
    print(f"  the file in nirtorch, {images} images x 16 steps: largest share of differing spikes in a layer "
          f"{worst:.2e}, predictions differing {found['predictions_differing']:.2%}", flush=True)  # fmt: skip
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--model", default="cifar-resnet20")
    ap.add_argument("--checkpoint", type=Path, required=True, help="a QAT checkpoint written by fit()")
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4])
    ap.add_argument("--test-images", type=int)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("runs/weight-bits.json"))
    ap.add_argument(
        "--check-file",
        type=int,
        default=0,
        metavar="N",
        help="also export each integer network (--primitives) and run the file in nirtorch's executor on N test "
        "images for 16 steps beside our simulation: the share of spikes that differ per layer (needs nirtorch)",
    )
    args = ap.parse_args()
    splits = get_dataset(args.dataset, args.data_dir)
    test = DataLoader(spread_subset(splits.test, args.test_images), batch_size=500)
    loaded = load_run(
        args.checkpoint, model=args.model, num_classes=splits.num_classes, in_channels=splits.in_channels, method="na"
    )
    qmodel, method, p = loaded.model, loaded.config.method, loaded.config.p
    ann = evaluate(qmodel, test)
    snn = convert(qmodel)
    rows, scales = {}, {}
    for bits in [None, *args.bits]:
        name = "float" if bits is None else f"{bits}-bit integer"
        net = snn
        if bits is not None:
            net, scales[name] = integer_network(snn, bits, next(iter(test))[0][:1])
        result = simulate(net, test, T=args.T, progress=False)
        rows[name] = {"ann_accuracy": ann, **result.row()}
        if bits is not None and args.check_file:
            rows[name]["file_check"] = check_file(net, test, args.check_file, args.out.with_suffix(f".{bits}bit.nir"))
        acc = result.accuracy
        print(f"{name}: T=1 {100 * acc[1]:.2f}%  T={args.T} {100 * acc[args.T]:.2f}%", flush=True)
    steps = [t for t in (1, 2, 4, 8, 16, 32, 64, 256) if t <= args.T]
    images = len(test.dataset)
    print(f"\n{args.dataset}, {args.model}, {method} p={p}, {images} test images; torch {torch.__version__}\n")
    print(accuracy_table(rows, steps))
    write_json({"args": {k: str(v) for k, v in vars(args).items()}, "results": rows, "units": scales}, args.out)


if __name__ == "__main__":
    main()
