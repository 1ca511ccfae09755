"""Per-image early exit against a fixed T, paired over seeds: a `noiseadaptor compare --exit` study made into
the table and figure of docs/guide/early-exit.md.

Every network (method x seed, all from one float network) chooses its exit rule on held-out training
images that no network trained on: among confidence and margin thresholds, the one with the smallest mean
T whose accuracy there is within 0.5 points of the fixed largest T's (and again within 1, 2 and 5 points:
four operating points, each chosen without the test set). On the test set the chosen rule is
paired with fixed T at the same mean latency (a share of the images run one step longer: accuracy and
energy interpolated between floor and ceil of the mean T used), with T = ceil(mean T) (at least the steps
the adaptive network spent on average) and with the largest T. Writes docs/figures/early_exit_<study>.{json,txt,png}.

    OMP_NUM_THREADS=2 python analysis/early_exit.py digits     # trains it: about 4 minutes on 2 CPU cores
    python analysis/early_exit.py cifar10 --report               # what studies/early-exit-cifar10 holds so far

The CIFAR-10 study is the one of docs/RESULTS.md §1 (ResNet-20, p = 2, 3 QAT epochs, 8 seeds) with 2,000
training images held out; it trains for hours on a CPU and resumes where it stopped, as two processes:
    OMP_NUM_THREADS=1 noiseadaptor compare --recipe studies/early-exit-cifar10/recipe.json \\
        --out studies/early-exit-cifar10 &    (twice)
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tutorials import machine  # analysis/tutorials.py

from noiseadaptor.study.config import StudyConfig
from noiseadaptor.study.statistics import early_exit
from noiseadaptor.study.study import load_cells, run_study, summarize_folder

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "figures"
RULES = [f"confidence={c}" for c in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999, 0.9999)]
RULES += [f"margin={m}" for m in (0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)]
DIGITS = {
    "dataset": "digits", "model": "small-cnn", "methods": ["na", "no-noise", "qcfs"], "seeds": list(range(8)),
    "float_epochs": 20, "float_lr": 0.05, "epochs": 10, "lr": 0.05, "batch_size": 64, "T": 32, "test_images": 0,
    "baseline": "qcfs", "contrasts": ["na:no-noise"], "exit": RULES, "exit_holdout": 300,
}  # fmt: skip
TOLERANCES = (0.005, 0.01, 0.02, 0.05)  # the operating points: accuracy the rule may give up on held-out images
STUDIES = {
    "digits": (DIGITS, ROOT / "runs" / "early-exit-digits"),
    "cifar10": (ROOT / "studies" / "early-exit-cifar10" / "recipe.json", ROOT / "studies" / "early-exit-cifar10"),
}


def pm(stat: dict, scale: float = 100, digits: int = 2) -> str:
    if stat["half_width"] is None:
        return f"{scale * stat['mean']:.{digits}f}"
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['half_width']:.{digits}f}"


def difference(stat: dict, scale: float = 100, digits: int = 2) -> str:
    return pm(stat, scale, digits) + ("" if stat["p_value"] is None else f" (p = {stat['p_value']:.2g})")


def operating_points(summary: dict, cells: list[dict]) -> dict[tuple[str, float], dict]:
    """{(method, tolerance): `early_exit` with the rule chosen again on the held-out results at that tolerance}."""
    T, out = summary["study"]["T"], {}
    for method, r in summary["rows"].items():
        if "exit" not in r:
            continue
        by_seed = {c["seed"]: c["rows"][method] for c in cells if c["method"] == method and method in c["rows"]}
        for tolerance in TOLERANCES:
            out[(method, tolerance)] = early_exit([by_seed[s] for s in r["seeds"]], r["seeds"], T, tolerance)
    return out


def table(points: dict[tuple[str, float], dict]) -> str:
    first = next(iter(points.values()))
    T = int(first["full"]["mean_T"]["mean"])
    lines = [
        "Mean ± 95 % t-interval half-width over seeds; differences paired by seed. Each network's "
        f"rule is the one with the smallest mean T on {first['held_out_images']} held-out training images whose "
        f"accuracy there is within the tolerance of T={T}'s. Fixed T at the same mean T: a share "
        "w = mean T − ⌊mean T⌋ of the test images run ⌈mean T⌉ steps, the rest ⌊mean T⌋ (accuracy and energy "
        "interpolated between the two fixed T).",
        "",
        "| method | seeds | tolerance, points | rule chosen (seeds) | mean T | adaptive top-1 % | E/E_ANN "
        "| fixed, same mean T: top-1 % | E/E_ANN | adaptive − fixed same T, points | adaptive − fixed same T, "
        f"E/E_ANN | adaptive − fixed ⌈mean T⌉, points | adaptive − T={T}, points |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (method, tolerance), e in points.items():
        rules = ", ".join(f"{r} ({e['rules'].count(r)})" for r in dict.fromkeys(e["rules"]))
        lines.append(
            f"| {method} | {len(e['seeds'])} | {100 * tolerance:g} | {rules} | {pm(e['adaptive']['mean_T'], 1)} | "
            f"{pm(e['adaptive']['accuracy'])} | {pm(e['adaptive']['energy'], 1, 3)} | "
            f"{pm(e['matched']['accuracy'])} | {pm(e['matched']['energy'], 1, 3)} | "
            f"{difference(e['adaptive_minus_matched']['accuracy'])} | "
            f"{difference(e['adaptive_minus_matched']['energy'], 1, 3)} | "
            f"{difference(e['adaptive_minus_fixed']['accuracy'])} | "
            f"{difference(e['adaptive_minus_full']['accuracy'])} |"
        )
    full = {m: e["full"] for (m, _), e in points.items()}
    lines += ["", f"Fixed T={T}: " + "; ".join(f"{m} {pm(f['accuracy'])} %, E/E_ANN {pm(f['energy'], 1, 3)}"
                                           for m, f in full.items()) + "."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(summary: dict, cells: list[dict], path: Path) -> None:
    """Accuracy against T (fixed) or mean T used (each rule, mean over seeds; the chosen rules' mean with its
    95 % interval), the same against energy, and where the chosen rules stop the test images."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    fig = Figure(figsize=(15, 4.2), layout="constrained")
    by_T, by_energy, stops = fig.subplots(1, 3)
    T = summary["study"]["T"]
    for colour, (method, r) in zip(("tab:blue", "tab:orange", "tab:green"), summary["rows"].items()):
        if "exit" not in r:
            continue
        rows = [c["rows"][method] for c in cells if c["method"] == method and method in c["rows"]]
        steps = [str(t) for t in range(1, T + 1)]
        energy = [sum(x["energy_pj_per_sample"][t] / x["ann_energy_pj_per_sample"] for x in rows) / len(rows)
                  for t in steps]  # fmt: skip
        accuracy = [100 * r["snn_accuracy"][t]["mean"] for t in steps]
        # between two whole T, fixed T at a mean latency is a mix of the two: linear in T, not in log T
        mixed = np.linspace(1, T, 50 * T)
        on_T = lambda y: np.interp(mixed, range(1, T + 1), y)  # noqa: E731
        by_T.plot(mixed, on_T(accuracy), color=colour, label=f"{method}, fixed T (a mix between two T)")
        by_energy.plot(on_T(energy), on_T(accuracy), color=colour, label=f"{method}, fixed T")
        rules = [[x["exits"][i] for x in rows] for i in range(len(rows[0]["exits"]))]
        points = [
            (sum(e["mean_T"] for e in rule) / len(rule), 100 * sum(e["accuracy"] for e in rule) / len(rule),
             sum(e["energy_pj_per_sample"] / x["ann_energy_pj_per_sample"] for e, x in zip(rule, rows)) / len(rule))
            for rule in rules
        ]  # fmt: skip
        by_T.scatter([p[0] for p in points], [p[1] for p in points], color=colour, marker="x", s=18)
        by_energy.scatter([p[2] for p in points], [p[1] for p in points], color=colour, marker="x", s=18)
        chosen = [next(e for e in x["exits"] if e["rule"] == x["exit_choice"]["rule"]) for x in rows]
        share = [100 * sum(e["exits"][t] / sum(e["exits"].values()) for e in chosen) / len(chosen) for t in steps]
        stops.plot(range(1, T + 1), [v or float("nan") for v in share], color=colour, marker=".", label=method)
        e = r["exit"]
        for ax, x in ((by_T, e["adaptive"]["mean_T"]), (by_energy, e["adaptive"]["energy"])):
            ax.errorbar(x["mean"], 100 * e["adaptive"]["accuracy"]["mean"], xerr=x["half_width"] or 0,
                        yerr=100 * (e["adaptive"]["accuracy"]["half_width"] or 0), color=colour, marker="o",
                        capsize=3, label=f"{method}, chosen rule (95 % CI)")  # fmt: skip
    by_T.set_xscale("log", base=2)
    by_T.set_xlabel("T (fixed), or mean T used per image (x: one rule, mean over seeds)")
    by_energy.set_xscale("log")
    by_energy.xaxis.set_minor_formatter(NullFormatter())  # within a decade, labelled minor ticks collide
    by_energy.set_xlabel("energy per image / the ANN's")
    stops.set_xlabel("step at which an image exits (chosen rule)")
    stops.set_ylabel("test images (%), mean over seeds")
    stops.set_yscale("log")
    stops.legend(fontsize=7)
    stops.grid(alpha=0.3)
    for ax in (by_T, by_energy):
        ax.set_ylabel("test top-1 (%), mean over seeds")
        ax.grid(alpha=0.3)
    by_T.legend(fontsize=7)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--report", action="store_true", help="write what the study folder holds; train nothing")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    recipe, folder = STUDIES[args.study]
    values = json.loads(recipe.read_text()) if isinstance(recipe, Path) else recipe
    config = StudyConfig.from_dict(values, source=str(recipe) if isinstance(recipe, Path) else args.study)
    start = time.time()
    summary = summarize_folder(config, folder) if args.report else run_study(config, folder)
    seconds = summary["seconds"]["qat"] + summary["seconds"]["simulate"]
    note = (f"\n`python analysis/early_exit.py {args.study}`: {summary['study']['model']} on "
            f"{summary['study']['dataset']}, T up to {summary['study']['T']}; its cells took {seconds / 60:.0f} "
            f"minutes to train and simulate, summed, on a {machine()}.\n")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    cells = load_cells(folder)
    points = operating_points(summary, cells)
    data = {"study": summary["study"], "exit": [{"method": m, "tolerance": t, **e} for (m, t), e in points.items()]}
    (args.out / f"early_exit_{args.study}.json").write_text(json.dumps(data))
    (args.out / f"early_exit_{args.study}.txt").write_text(table(points) + note)
    plot(summary, cells, args.out / f"early_exit_{args.study}.png")
    print(table(points) + note + f"({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
