"""Will it convert? `noiseadaptor.check` on every torchvision classifier, and the converting ones run as SNNs.

For every builder in `torchvision.models.list_models(module=torchvision.models)`: the model with random
weights (10 classes), `check`'s verdict (converts / converts with rewrites / refused, first reason); for
those that convert, `prepare`, `init_scales` and `convert` on two random 3x64x64 images (224x224 where 64
is too small), and `simulate` for 4 steps, to show that the SNN runs. Writes the table the site shows
(docs/figures/torchvision_check.txt, included by docs/guide/check.md) and its data
(docs/figures/torchvision_check.json).

    OMP_NUM_THREADS=1 python analysis/torchvision_check.py            # about 10 minutes on one CPU core
    python analysis/torchvision_check.py --models resnet18 vgg11      # some
"""

import argparse
import json
import platform
import time
import traceback
from collections import Counter
from pathlib import Path

import torch
import torchvision

from noiseadaptor import convert, init_scales, prepare, simulate
from noiseadaptor.ann.check import check

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"


def sweep_one(name: str, steps: int = 4) -> dict:
    """`check`'s verdict on torchvision's `name`, and for a converting model whether its SNN runs."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    report = check(model, name)
    row = {
        "model": name,
        "verdict": report.verdict().split(":")[0],
        "parameters": sum(p.numel() for p in model.parameters()),
        "rewritten": dict(Counter(o.op for o in report.rewritten)),
        "refused": dict(Counter(o.op for o in report.refused)),
        "first_reason": report.verdict().split(": ", 1)[1] if report.refused else "",
    }
    if not report.converts:
        return row
    for size in (64, 224):
        x = torch.rand(2, 3, size, size)
        try:
            qmodel = prepare(model)
            init_scales(qmodel, x)
            result = simulate(convert(qmodel), [(x, torch.zeros(2, dtype=torch.long))], T=steps, progress=False)
        except RuntimeError as err:  # an input too small for the architecture: try the next size
            row["snn"] = f"failed at {size}x{size}: {str(err).splitlines()[0]}"
            continue
        spikes = result.spikes_per_sample[steps]
        row["snn"] = f"ran {steps} steps at {size}x{size}, {spikes:,.0f} spikes per image"
        row["snn_ran"] = True
        break
    return row


def table(rows: list[dict]) -> str:
    counts = Counter(r["verdict"] for r in rows)
    ran = sum(bool(r.get("snn_ran")) for r in rows)
    lines = [
        f"{len(rows)} classifiers: {counts['converts']} convert as they are, {counts['converts with rewrites']} "
        f"convert with rewrites, {counts['refused']} are refused; {ran} of the {len(rows) - counts['refused']} "
        "converting ones ran as SNNs.",
        "",
        "| model | parameters | verdict | rewritten | refused (first reason) | SNN |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        rewritten = ", ".join(f"{n}× {op}" for op, n in r["rewritten"].items())
        refused = ", ".join(f"{n}× {op}" for op, n in r["refused"].items())
        if r["first_reason"]:  # the first refusal's advice, short
            advice = r["first_reason"].split("equivalent", 1)[-1].lstrip(":. ").split(";")[0].split(". ")[0]
            refused += f"; first: {r['first_reason'].split(' at ')[0]}: {advice[:110]}"
        lines.append(f"| {r['model']} | {r['parameters'] / 1e6:.1f} M | {r['verdict']} | {rewritten} | "
                     f"{refused} | {r.get('snn', '')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    names = torchvision.models.list_models(module=torchvision.models)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=names, help="torchvision builders (default: every one)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the table and its data")
    args = parser.parse_args()
    rows, start = [], time.time()
    for name in args.models:
        began = time.time()
        try:
            row = sweep_one(name)
        except Exception as err:  # a builder or a check that fails is a row of the table, not the end of it
            row = {"model": name, "verdict": "refused", "parameters": 0, "rewritten": {}, "refused": {},
                   "first_reason": f"error: {type(err).__name__}: {err}", "trace": traceback.format_exc()}  # fmt: skip
        row["seconds"] = round(time.time() - began, 1)
        rows.append(row)
        print(f"{name:<24} {row['verdict']:<24} {row.get('snn', row['first_reason'])[:90]} ({row['seconds']} s)")
    meta = {"torchvision": torchvision.__version__, "torch": torch.__version__, "machine": platform.machine(),
            "seconds": round(time.time() - start)}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "torchvision_check.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (args.out / "torchvision_check.txt").write_text(table(rows))
    print(table(rows).splitlines()[0])


if __name__ == "__main__":
    main()
