#!/usr/bin/env python3
"""The method benchmark at GPU scale, one prepared command: Noise Adaptor vs no-noise vs QCFS on CIFAR-10,
paired over seeds, every method from one float network, data on the device, the full test set, T = 1..64.

    python benchmarks/gpu_study.py --pack shared-data/pack.npz --out $OUT          # ~9 minutes on one H200

Phases, each timed into OUT/timing.json: unpack the JPEG copy (`pack.npz` of ../shared/datasets/cifar10-jpeg:
concatenated JPEG bytes, offsets and labels per split) into an image-folder tree under OUT; train the float
ResNet-20 (--float-epochs); QAT per seed and method (--epochs each); simulate. The study itself is
`noiseadaptor compare` (OUT/study: cells, compare.json, compare.png), so a killed run resumes and
`noiseadaptor compare --out OUT/study --report` re-prints it. The schedule is short by design: the question
is how close one short device run gets to the paper (400 epochs, ResNet-18, SNN T=4 95.95 %).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _write_split(args) -> int:
    pack, split, root = args
    from PIL import Image

    data = np.load(pack)
    jpeg, offsets, labels = data[f"{split}_jpeg"], data[f"{split}_offsets"], data[f"{split}_labels"]
    for c in CLASSES:
        (root / split / c).mkdir(parents=True, exist_ok=True)
    for i, label in enumerate(labels):
        image = Image.open(io.BytesIO(jpeg[offsets[i] : offsets[i + 1]].tobytes())).convert("RGB")
        image.save(root / split / CLASSES[int(label)] / f"{i:05d}.png")
    return len(labels)


def unpack(pack: Path, root: Path) -> dict[str, int]:
    """pack.npz -> root/{train,test}/<class>/<index>.png (torchvision's ImageFolder layout), once."""
    done = root / "unpacked.json"
    if done.exists():
        return json.loads(done.read_text())
    with ProcessPoolExecutor(2) as pool:
        counts = dict(zip(("train", "test"), pool.map(_write_split, [(pack, s, root) for s in ("train", "test")])))
    done.write_text(json.dumps(counts))
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", type=Path, required=True, help="the CIFAR-10 pack.npz (JPEG copy)")
    ap.add_argument("--out", type=Path, required=True, help="output folder (data, study, timing.json)")
    ap.add_argument("--model", default="cifar-resnet20")
    ap.add_argument("--num-seeds", type=int, default=3, help="seeds 0..N-1")
    ap.add_argument("--float-epochs", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=10, help="QAT epochs per seed and method")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--test-images", type=int, default=0, help="0: the whole test set")
    ap.add_argument("--variants", default="negative,cos4")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args(argv)
    if not args.pack.is_file():
        sys.exit(f"no pack at {args.pack}: copy ../shared/datasets/cifar10-jpeg/pack.npz beside the checkout")

    from noiseadaptor.io.files import write_json
    from noiseadaptor.io.report import plot_study, study_table
    from noiseadaptor.study.config import StudyConfig
    from noiseadaptor.study.study import run_study

    timing = {}
    begin = time.time()
    counts = unpack(args.pack, args.out / "cifar10")
    timing["unpack"] = time.time() - begin
    config = StudyConfig.from_dict(
        dict(
            dataset="cifar10",
            data_dir=str(args.out / "cifar10"),
            model=args.model,
            seeds=tuple(range(args.num_seeds)),
            float_epochs=args.float_epochs,
            float_lr=0.1,
            epochs=args.epochs,
            batch_size=args.batch_size,
            T=args.T,
            test_images=args.test_images,
            variants=tuple(v for v in args.variants.split(",") if v),
            device=args.device,
            data_on_device=args.device.startswith("cuda"),
        )
    )
    begin = time.time()
    summary = run_study(config, args.out / "study")
    timing["study"] = time.time() - begin
    timing["float"] = json.loads((args.out / "study" / "float-network.json").read_text())["seconds"]
    timing.update({f"{k} (all cells)": v for k, v in summary["seconds"].items()})
    print(study_table(summary))
    plot_study(summary, args.out / "study" / "compare.png")
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device.startswith("cuda") else "cpu"
    write_json(
        {"images": counts, "seconds": timing, "device": device, "torch": torch.__version__}, args.out / "timing.json"
    )
    print("\n" + ", ".join(f"{k} {v:.0f} s" for k, v in timing.items()) + f" on {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
