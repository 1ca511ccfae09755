"""A study's statistics: per row and T, the seeds' mean and 95 % t-interval; per row against a baseline, the
per-seed paired difference, its t-interval, the paired t-test and Holm's adjustment over T."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from types import SimpleNamespace

from ..snn.stopping import choose_exit
from .config import StudyConfig, split_row


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean, the half-width of its two-sided t-interval over the samples, and the samples."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n if n else None
    if n < 2:
        return {"n": n, "mean": mean, "half_width": None, "values": list(values)}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "half_width": half, "values": list(values)}


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """a - b paired by position: the t-interval of the differences and the two-sided paired t-test."""
    from scipy import stats

    diffs = [x - y for x, y in zip(a, b)]
    out = t_interval(diffs, confidence)
    if len(diffs) >= 2 and max(diffs) - min(diffs) > 1e-12 * max(1.0, *map(abs, diffs)):  # float noise is no spread
        out["p_value"] = float(stats.ttest_rel(a, b).pvalue)
    else:  # fewer than two pairs, or no spread: no test
        out["p_value"] = None
    return out


def summarize(config: StudyConfig, cells: list[dict]) -> dict:
    """The study's statistics (schema in README, "compare.json"). Each row is paired with the baseline over
    the seeds where both trained; a diverged cell is counted in `diverged_seeds` and left out. The seeds
    are the config's and those of every cell (processes sharing a study each name only their own)."""
    seeds = tuple(sorted(set(config.seeds) | {c["seed"] for c in cells if c["method"] in config.methods}))
    config = dataclasses.replace(config, seeds=seeds)
    by = {(c["method"], c["seed"]): c for c in cells if "diverged" not in c}
    diverged = {m: [c["seed"] for c in cells if c["method"] == m and "diverged" in c] for m in config.methods}
    complete = [s for s in config.seeds if all((m, s) in by for m in config.methods)]
    steps = [str(t) for t in range(1, config.T + 1)]
    rows = {}
    for row in config.rows():
        method = split_row(row)[0]
        seeds = [s for s in config.seeds if (method, s) in by and row in by[(method, s)]["rows"]]
        if not seeds:
            continue
        data = [by[(method, s)]["rows"][row] for s in seeds]
        pre = pre_steps(data[0])
        layers = list(data[0]["layer_error"][steps[0]])
        rows[row] = {
            "seeds": seeds,
            "diverged_seeds": diverged[method],
            "pre_steps": pre,
            "T_total": {t: int(t) + pre for t in steps},  # steps run per image, pre-steps included
            "ann_accuracy": t_interval([by[(method, s)]["ann_accuracy"] for s in seeds]),
            "snn_accuracy": {t: t_interval([d["snn_accuracy"][t] for d in data]) for t in steps},
            "agreement": {t: t_interval([d["agreement"][t] for d in data]) for t in steps},
            "layer_error": {
                t: {layer: t_interval([d["layer_error"][t][layer] for d in data]) for layer in layers} for t in steps
            },
            "mean_layer_error": {t: t_interval([_mean_error(d, t) for d in data]) for t in steps},
        }
        if all("exit_choice" in d for d in data):
            rows[row]["exit"] = early_exit(data, seeds, config.T)
    base = config.baseline
    differences = {row: _contrast(by, config, row, base, steps) for row in rows if row != base}
    contrasts = {f"{row} - {other}": _contrast(by, config, row, other, steps) for row, other in config.contrast_pairs()}
    seconds = {part: sum(c.get("seconds", {}).get(part, 0.0) for c in cells) for part in ("qat", "simulate")}
    return {
        "format": "noiseadaptor-compare-v1",
        "study": {**config.to_dict(), "method_lrs": config.method_lrs()},
        "seconds": seconds,
        "confidence": 0.95,
        "complete_seeds": complete,
        "baseline": base,
        "rows": rows,
        "differences": {row: d for row, d in differences.items() if d is not None},
        "contrasts": {name: d for name, d in contrasts.items() if d is not None},
    }


def early_exit(data: list[dict], seeds: list[int], T: int, tolerance: float | None = None) -> dict:
    """Per-image early exit in a row's cells (`data`, one per seed of `seeds`): each seed's chosen rule
    ("adaptive": test accuracy, mean T, energy as a fraction of the ANN's) against three fixed-T networks:
    "matched", the same mean latency exactly (a share w = mean T - floor(mean T) of the images run for
    ceil(mean T) steps and the rest for floor(mean T): accuracy and energy interpolated between the two);
    "fixed", T = ceil(mean T) (at least the steps the adaptive network spent on average); "full", the
    largest T. Adaptive minus each, paired over the seeds.
    `tolerance`: choose again on the cells' held-out results with this one (default: the cells' choice)."""
    columns: dict[str, list[tuple[float, float, float]]] = {"adaptive": [], "matched": [], "fixed": [], "full": []}
    rules = []
    for d in data:
        rules.append(d["exit_choice"]["rule"] if tolerance is None else _chosen_again(d["exit_choice"], tolerance))
        chosen = next(e for e in d["exits"] if e["rule"] == rules[-1])
        ann = d["ann_energy_pj_per_sample"]

        def at(t: int, d=d, ann=ann) -> tuple[float, float, float]:
            return d["snn_accuracy"][str(t)], t, d["energy_pj_per_sample"][str(t)] / ann

        mean_T = chosen["mean_T"]
        low, high = at(max(1, math.floor(mean_T + 1e-9))), at(min(T, math.ceil(mean_T - 1e-9)))
        w = 0.0 if high[1] == low[1] else (mean_T - low[1]) / (high[1] - low[1])
        columns["adaptive"].append((chosen["accuracy"], mean_T, chosen["energy_pj_per_sample"] / ann))
        columns["matched"].append(tuple((1 - w) * a + w * b for a, b in zip(low, high)))
        columns["fixed"].append(high)
        columns["full"].append(at(T))
    keys = ("accuracy", "mean_T", "energy")
    column = {name: {k: [v[i] for v in values] for i, k in enumerate(keys)} for name, values in columns.items()}
    return {
        "seeds": seeds,
        "rules": rules,
        "held_out_images": data[0]["exit_choice"]["images"],
        "tolerance": data[0]["exit_choice"]["tolerance"] if tolerance is None else tolerance,
        **{name: {k: t_interval(v) for k, v in c.items()} for name, c in column.items()},
        **{f"adaptive_minus_{name}": {k: paired_difference(column["adaptive"][k], column[name][k]) for k in keys}
           for name in ("matched", "fixed", "full")},
    }  # fmt: skip


def _chosen_again(choice: dict, tolerance: float) -> str:
    """The rule `choose_exit` picks from a cell's held-out results (`exit_choice`) with `tolerance`."""
    held = [SimpleNamespace(rule=e["rule"], accuracy=e["accuracy"], mean_T=e["mean_T"]) for e in choice["exits"]]
    return choose_exit(held, reference=choice["accuracy_at_T"], max_drop=tolerance).rule


def _contrast(by: dict, config: StudyConfig, row: str, base: str, steps: list[str]) -> dict | None:
    """Row minus base, paired over the seeds where both trained (a method that diverged at some seed leaves
    that seed out of its own differences, not out of the others'); None when no seed has both. Holm's
    adjustment of the p-values is over the report's T (powers of two), `p_holm`."""
    method, base_method = split_row(row)[0], split_row(base)[0]
    seeds = [
        s for s in config.seeds
        if (method, s) in by and (base_method, s) in by and row in by[(method, s)]["rows"]
        and base in by[(base_method, s)]["rows"]
    ]  # fmt: skip
    if not seeds:
        return None
    ours, theirs = [by[(method, s)] for s in seeds], [by[(base_method, s)] for s in seeds]
    out = {
        "seeds": seeds,
        "snn_accuracy": {
            t: paired_difference([c["rows"][row]["snn_accuracy"][t] for c in ours],
                                 [c["rows"][base]["snn_accuracy"][t] for c in theirs])
            for t in steps
        },
        "ann_accuracy": paired_difference([c["ann_accuracy"] for c in ours], [c["ann_accuracy"] for c in theirs]),
        # the mechanism, with far less seed-to-seed spread than accuracy: the mean per-layer conversion error
        "mean_layer_error": {
            t: paired_difference([_mean_error(c["rows"][row], t) for c in ours],
                                 [_mean_error(c["rows"][base], t) for c in theirs])
            for t in steps
        },
    }  # fmt: skip
    if all("energy_pj_per_sample" in c["rows"][r] for cells, r in ((ours, row), (theirs, base)) for c in cells):
        out["snn_accuracy_at_base_energy"] = _at_base_energy(
            [c["rows"][row] for c in ours], [c["rows"][base] for c in theirs], steps
        )
    for key in ("snn_accuracy", "mean_layer_error", "snn_accuracy_at_base_energy"):
        tested = [t for t in steps if int(t) & (int(t) - 1) == 0 and t in out.get(key, {})]
        for t, adjusted in zip(tested, holm([out[key][t]["p_value"] for t in tested])):
            out[key][t]["p_holm"] = adjusted
    return out


def _at_base_energy(ours: list[dict], theirs: list[dict], steps: list[str]) -> dict:
    """Row minus base at the same energy per image: at each T, the base's top-1 against the row's top-1 at
    the energy the base spent by T (linear between the two T of the row's curve around it), paired by seed.
    A T where some seed's row never spends that much, or spends more at T = 1, is left out: no extrapolation."""
    out = {}
    for t in steps:
        at = [_accuracy_at_energy(r, b["energy_pj_per_sample"][t], steps) for r, b in zip(ours, theirs)]
        if None not in at:
            out[t] = paired_difference(at, [b["snn_accuracy"][t] for b in theirs])
    return out


def _accuracy_at_energy(row: dict, energy: float, steps: list[str]) -> float | None:
    """A row's top-1 at `energy` per image, reading its accuracy-against-energy curve over T = steps (energy
    grows with T) linearly between the two T around it; None outside the curve."""
    curve = [(row["energy_pj_per_sample"][t], row["snn_accuracy"][t]) for t in steps]
    for (e0, a0), (e1, a1) in zip(curve, curve[1:]):
        if e0 <= energy <= e1:
            return a0 if e1 == e0 else a0 + (a1 - a0) * (energy - e0) / (e1 - e0)
    return curve[0][1] if len(curve) == 1 and curve[0][0] == energy else None


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: no test, left out of the family)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        out[i] = running
    return out


def _mean_error(row: dict, t: str) -> float:
    errors = row["layer_error"][t]
    return sum(errors.values()) / len(errors)


def pre_steps(row: dict) -> int:
    """The pre-steps per image of a cell's row (a full simulation row, or the trimmed one studies kept in 0.2)."""
    return row["pre_steps"] if "pre_steps" in row else row["corrections"]["pre_steps"]
