"""Per-image early exit against a fixed T, paired over seeds: the digits at CPU scale.

For each seed and method (na, no-noise, qcfs): a small CNN trained on the digits' training split less 300
held-out images (the float network once, at seed 0; QAT per method and seed), converted. The exit rule is
chosen on the 300 held-out *training* images, never the test set: among confidence and margin thresholds,
the one with the smallest mean T whose held-out accuracy is within 0.5 points of the fixed T_REF's. On the
test split the chosen rule is then compared with a fixed T at the same latency: the fixed T = ceil(mean T
used), which gives the fixed-T network at least the steps the adaptive one spent on average. Paired
differences (adaptive - fixed) over the 8 seeds, with 95 % t-intervals. Writes
docs/figures/early_exit_digits.{json,txt,png}.

    OMP_NUM_THREADS=2 python analysis/early_exit.py          # about 3 minutes on 2 CPU cores
"""

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

import noiseadaptor as na
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset
from noiseadaptor.snn.stopping import ExitRule, choose_exit
from noiseadaptor.study.statistics import paired_difference, t_interval
from noiseadaptor.training.optim import OptimizerConfig

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"
T_REF = 32
RULES = [ExitRule(confidence=c) for c in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999, 0.9999)]
RULES += [ExitRule(margin=m) for m in (0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)]
METHODS = {
    "na": (na.QuantConfig(p=2), OptimizerConfig.noise_adaptor()),
    "no-noise": (na.QuantConfig.no_noise(p=2), OptimizerConfig.noise_adaptor()),
    "qcfs": (na.QuantConfig.qcfs(p=2), OptimizerConfig()),
}


def networks(seeds, epochs: int):
    """(method, seed, snn, held-out loader, test loader) for every cell."""
    digits = get_dataset("digits")
    order = torch.randperm(len(digits.train), generator=torch.Generator().manual_seed(0)).tolist()
    train, held_out = Subset(digits.train, order[300:]), Subset(digits.train, order[:300])
    test_loader, held_loader = DataLoader(digits.test, batch_size=400), DataLoader(held_out, batch_size=300)
    torch.manual_seed(0)
    float_model = create_model("small-cnn", num_classes=10, in_channels=1)
    float_loader = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    na.fit(float_model, float_loader, epochs=2 * epochs, lr=0.05, progress=False)
    for seed in seeds:
        for method, (quant, optimizer) in METHODS.items():
            torch.manual_seed(seed)
            loader = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))
            qmodel = na.prepare(float_model, quant)
            na.init_scales(qmodel, next(iter(loader))[0])
            na.fit(qmodel, loader, epochs=epochs, lr=0.05, optimizer=optimizer, progress=False)
            yield method, seed, na.convert(qmodel.eval()), held_loader, test_loader


def cell(snn, held_loader, test_loader) -> dict:
    held = na.simulate(snn, held_loader, T=T_REF, progress=False, exit=RULES)
    chosen = choose_exit(held.exits, reference=held.accuracy[T_REF], max_drop=0.005)
    test = na.simulate(snn, test_loader, T=T_REF, progress=False, exit=RULES)
    adaptive = next(e for e in test.exits if e.rule == chosen.rule)
    fixed_T = min(T_REF, math.ceil(adaptive.mean_T - 1e-9))
    ann = test.ann_energy_pj_per_sample
    return {
        "rule": chosen.rule.label,
        "held_out": {"accuracy_at_T_ref": held.accuracy[T_REF], "accuracy": chosen.accuracy, "mean_T": chosen.mean_T},
        "adaptive": {
            "accuracy": adaptive.accuracy,
            "mean_T": adaptive.mean_T,
            "energy": adaptive.energy_pj_per_sample / ann,
            "exits": adaptive.exits,
        },  # fmt: skip
        "fixed": {"T": fixed_T, "accuracy": test.accuracy[fixed_T], "energy": test.energy_pj_per_sample[fixed_T] / ann},
        "fixed_T_ref": {"accuracy": test.accuracy[T_REF], "energy": test.energy_pj_per_sample[T_REF] / ann},
        "curve": {
            "fixed": {t: test.accuracy[t] for t in test.accuracy},
            "rules": [(e.mean_T, e.accuracy) for e in test.exits],
        },  # fmt: skip
    }


def summarize(cells: dict) -> dict:
    out = {}
    for method in METHODS:
        rows = [c for (m, _), c in sorted(cells.items()) if m == method]
        out[method] = {
            "adaptive_accuracy": t_interval([r["adaptive"]["accuracy"] for r in rows]),
            "adaptive_mean_T": t_interval([r["adaptive"]["mean_T"] for r in rows]),
            "adaptive_energy": t_interval([r["adaptive"]["energy"] for r in rows]),
            "fixed_T": [r["fixed"]["T"] for r in rows],
            "fixed_accuracy": t_interval([r["fixed"]["accuracy"] for r in rows]),
            "fixed_energy": t_interval([r["fixed"]["energy"] for r in rows]),
            "accuracy_adaptive_minus_fixed": paired_difference(
                [r["adaptive"]["accuracy"] for r in rows], [r["fixed"]["accuracy"] for r in rows]
            ),  # fmt: skip
            "energy_adaptive_minus_fixed": paired_difference(
                [r["adaptive"]["energy"] for r in rows], [r["fixed"]["energy"] for r in rows]
            ),  # fmt: skip
            "accuracy_adaptive_minus_T_ref": paired_difference(
                [r["adaptive"]["accuracy"] for r in rows], [r["fixed_T_ref"]["accuracy"] for r in rows]
            ),  # fmt: skip
            "rules": [r["rule"] for r in rows],
        }
    return out


def pm(stat: dict, scale: float = 100, digits: int = 2) -> str:
    half = stat["half_width"]
    return (
        f"{scale * stat['mean']:.{digits}f} ± {scale * half:.{digits}f}"
        if half == half
        else f"{scale * stat['mean']:.{digits}f}"
    )


def table(summary: dict, n: int) -> str:
    lines = [
        f"| method | rule chosen on held-out (per seed) | adaptive top-1 % | mean T | E/E_ANN | fixed T = ⌈mean T⌉ | "
        f"fixed top-1 % | E/E_ANN | adaptive − fixed (points) | adaptive − T={T_REF} (points) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        d, r = s["accuracy_adaptive_minus_fixed"], s["accuracy_adaptive_minus_T_ref"]
        p = "" if d["p_value"] is None else f" (p = {d['p_value']:.2g})"
        rules = ", ".join(sorted(set(s["rules"])))
        lines.append(
            f"| {method} | {rules} | {pm(s['adaptive_accuracy'])} | {pm(s['adaptive_mean_T'], 1)} | "
            f"{pm(s['adaptive_energy'], 1, 3)} | {', '.join(map(str, s['fixed_T']))} | {pm(s['fixed_accuracy'])} | "
            f"{pm(s['fixed_energy'], 1, 3)} | {pm(d)}{p} | {pm(r)} |"
        )
    return f"{n} seeds, mean ± 95 % t-interval half-width; differences paired by seed.\n\n" + "\n".join(lines) + "\n"


def plot(cells: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    for colour, method in zip(("tab:blue", "tab:orange", "tab:green"), METHODS):
        rows = [c for (m, _), c in sorted(cells.items()) if m == method]
        steps = sorted(int(t) for t in rows[0]["curve"]["fixed"])
        fixed = [sum(r["curve"]["fixed"][t] for r in rows) / len(rows) for t in steps]
        ax.plot(steps, [100 * a for a in fixed], color=colour, label=f"{method}, fixed T")
        points = [[r["curve"]["rules"][i] for r in rows] for i in range(len(RULES))]
        mean_T = [sum(p[0] for p in rule) / len(rule) for rule in points]
        accuracy = [100 * sum(p[1] for p in rule) / len(rule) for rule in points]
        ax.scatter(mean_T, accuracy, color=colour, marker="x", label=f"{method}, early exit (each rule)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("T, or mean T used per image")
    ax.set_ylabel("test top-1 (%), mean over seeds")
    ax.set_ylim(bottom=90)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    start, cells = time.time(), {}
    for method, seed, snn, held, test in networks(range(args.seeds), args.epochs):
        cells[(method, seed)] = cell(snn, held, test)
        c = cells[(method, seed)]
        print(f"[{method} seed {seed}] rule {c['rule']}: adaptive {100 * c['adaptive']['accuracy']:.2f} % at mean T "
              f"{c['adaptive']['mean_T']:.2f}; fixed T={c['fixed']['T']} {100 * c['fixed']['accuracy']:.2f} % "
              f"({time.time() - start:.0f} s)")  # fmt: skip
    summary = summarize(cells)
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = round(time.time() - start)
    data = {"T_ref": T_REF, "rules": [r.label for r in RULES], "summary": summary, "seconds": seconds,
            "cells": {f"{m}-seed{s}": c for (m, s), c in cells.items()}}  # fmt: skip
    (args.out / "early_exit_digits.json").write_text(json.dumps(data, indent=1))
    (args.out / "early_exit_digits.txt").write_text(table(summary, args.seeds))
    plot(cells, args.out / "early_exit_digits.png")
    print(table(summary, args.seeds))


if __name__ == "__main__":
    main()
