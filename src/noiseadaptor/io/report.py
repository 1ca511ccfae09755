"""Every table and plot: accuracy and energy per T (`run`, `evaluate`), and a study's intervals and paired
differences (`compare`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..snn.accounting import E_AC_PJ
from .files import atomic_path

TABLE_T = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def accuracy_table(rows: dict[str, dict], steps: list[int] | None = None) -> str:
    """rows: {method: {"ann_accuracy": float, "snn_accuracy": {T: float}}} -> a fixed-width text table (%)."""
    return _per_T_table(
        rows,
        "snn_accuracy",
        steps,
        first=("ANN", lambda r: f"{100 * r['ann_accuracy']:.2f}" if "ann_accuracy" in r else "-"),
        cell=lambda v: f"{100 * v:.2f}",
    )


def energy_table(
    rows: dict[str, dict], steps: list[int] | None = None, sops_only: bool = False, pre_steps: bool = True
) -> str:
    """E_SNN / E_ANN per T for rows that carry "energy_pj_per_sample" and "ann_energy_pj_per_sample".
    sops_only: the dual-phase paper's count (002, Table 4), E_SNN = SOPs * 0.9 pJ alone, where ours (Eq. 20
    of paper 000) adds the analog first layer's MACs at every step. pre_steps=False: without the pre-steps
    of a two-stage correction (COS, SRP), as their papers count; by default they are counted."""

    def snn(r: dict) -> dict:
        if not sops_only:
            pre = 0.0 if pre_steps else r.get("pre_step_energy_pj_per_sample", 0.0)
            return {t: e - pre for t, e in r["energy_pj_per_sample"].items()}
        pre = 0.0 if pre_steps else r.get("pre_step_sops_per_sample", 0.0)
        return {t: (s - pre) * E_AC_PJ for t, s in r["sops_per_sample"].items()}

    rows = {
        m: {**r, "energy_ratio": {t: e / r["ann_energy_pj_per_sample"] for t, e in snn(r).items()}}
        for m, r in rows.items()
        if r.get("energy_pj_per_sample")
    }
    return _per_T_table(
        rows,
        "energy_ratio",
        steps,
        first=("E_ANN uJ", lambda r: f"{r['ann_energy_pj_per_sample'] / 1e6:.3f}"),
        cell=lambda v: f"{v:.3f}",
    )


def _per_T_table(rows: dict[str, dict], key: str, steps: list[int] | None, first, cell) -> str:
    if not rows:
        return ""
    present = sorted({t for r in rows.values() for t in r.get(key, {})})
    steps = steps or [t for t in TABLE_T if t in present] or present
    width = max(len("method"), *(len(m) for m in rows))
    first_name, first_value = first
    w0 = max(6, len(first_name))
    header = f"{'method':<{width}}  {first_name:>{w0}}" + "".join(f"  {'T=' + str(t):>6}" for t in steps)
    lines = [header, "-" * len(header)]
    for method, row in rows.items():
        if "diverged" in row:
            lines.append(f"{method:<{width}}  {'diverged':>{w0}}  ({row['diverged'].split(';')[0]})")
            continue
        values = row.get(key, {})
        cells = "".join(f"  {cell(values[t]):>6}" if t in values else f"  {'':>6}" for t in steps)
        lines.append(f"{method:<{width}}  {first_value(row):>{w0}}{cells}")
    return "\n".join(lines)


def plot_accuracy(rows: dict[str, dict], path: str | Path, title: str = "SNN accuracy vs time steps") -> None:
    """One line per method (SNN accuracy against T, log2 axis) and a dotted line at its ANN accuracy
    (rows may have either)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (method, row) in enumerate(rows.items()):
        color = f"C{i}"
        snn = row.get("snn_accuracy", {})
        if snn:
            ts = sorted(snn)
            ax.plot(ts, [100 * snn[t] for t in ts], color=color, label=f"{method} SNN")
        if "ann_accuracy" in row:
            ax.axhline(100 * row["ann_accuracy"], color=color, linestyle=":", label=f"{method} ANN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def _pm(stat: dict, scale: float = 100.0, digits: int = 2, accuracy: bool = False) -> str:
    """'mean ± half-width'; the mean alone for one seed or no spread; for an accuracy whose interval passes
    0 or 100 %, 'mean [low, high]' with the interval clipped to what an accuracy can be."""
    if stat["mean"] is None:
        return "-"
    mean, half = scale * stat["mean"], scale * (stat["half_width"] or 0.0)
    if not half:
        return f"{mean:.{digits}f}"
    if accuracy and (mean + half > 100.0 or mean - half < 0.0):
        return f"{mean:.{digits}f} [{max(0.0, mean - half):.{digits}f}, {min(100.0, mean + half):.{digits}f}]"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def study_table(summary: dict, steps: Sequence[int] = (1, 2, 4, 8, 16, 32, 64)) -> str:
    """Accuracy (mean ± 95 % half-width, %) per row and T, then the paired differences (each row against the
    baseline, then the study's contrasts) with their p-values, Holm-adjusted over the T shown beside them."""
    T = summary["study"]["T"]
    steps = [t for t in steps if t <= T]
    n = len(summary["complete_seeds"])
    pairs = {**{f"{row} - {summary['baseline']}": d for row, d in summary["differences"].items()},
             **summary.get("contrasts", {})}  # fmt: skip
    width = max([16, *(len(name) + 2 for name in [*summary["rows"], *pairs])])
    cells = {
        row: [_pm(r["ann_accuracy"], accuracy=True), *(_pm(r["snn_accuracy"][str(t)], accuracy=True) for t in steps)]
        for row, r in summary["rows"].items()
    }
    column = max([16, *(len(c) + 2 for row in cells.values() for c in row)])  # a bounded interval is wider
    lines = [
        f"SNN top-1 (%), mean ± 95% CI half-width over seeds ({n} complete)",
        f"{'row':<{width}}{'ANN':>{column}}" + "".join(f"{'T=' + str(t):>{column}}" for t in steps),
    ]
    for row, r in summary["rows"].items():
        lines.append(f"{row:<{width}}" + "".join(f"{c:>{column}}" for c in cells[row]))
        if r["pre_steps"]:
            lines.append(f"{'':<{width}}(T counts main steps; run = T + {r['pre_steps']})")
    if summary.get("float", {}).get("per_seed"):
        accuracy = _pm(summary["float"]["ann_accuracy"])
        lines.append(f"(each seed's cells start from its own float network: ANN {accuracy}%)")
    elif summary.get("float"):
        lines.append(f"(every cell starts from one float network: ANN {100 * summary['float']['ann_accuracy']:.2f}%; "
                     "the intervals hold the QAT seeds' spread, not its: --float-per-seed for both)")  # fmt: skip
    own = {m: lr for m, lr in summary["study"].get("method_lrs", {}).items() if lr != summary["study"]["lr"]}
    if own:
        lines.append("QAT at its own lr (method_lr): " + ", ".join(f"{m} {lr:g}" for m, lr in own.items()))
    for key, title in (
        ("snn_accuracy", "paired difference of SNN top-1 (points)"),
        ("snn_accuracy_at_base_energy", "paired difference of SNN top-1 at the same energy per image: the first "
         "row at what the second spends by T (points; -: outside the first's T)"),
        ("mean_layer_error", "paired difference of the mean per-layer conversion error (% of threshold)"),
    ):  # fmt: skip
        table = {
            name: [_pm(d[key][str(t)]) + f" [{_p(d[key][str(t)])}]" if str(t) in d[key] else "-" for t in steps]
            for name, d in pairs.items()
            if key in d
        }  # fmt: skip  (studies summarised before 0.2 lack the error; without SOPs, the energy)
        if not table:
            continue
        lines += ["", f"{title}, mean ± 95% CI [p-value; Holm over T={','.join(map(str, steps))}]"]
        column = max([30, *(len(c) for cells in table.values() for c in cells)])
        lines.append(f"{'difference':<{width}}" + "  ".join(f"{'T=' + str(t):<{column}}" for t in steps).rstrip())
        for name, cells in table.items():
            lines.append(f"{name:<{width}}" + "  ".join(f"{c:<{column}}" for c in cells).rstrip())
    exits = {row: r["exit"] for row, r in summary["rows"].items() if "exit" in r}
    if exits:
        lines += ["", *exit_table(exits, width)]
    return "\n".join(lines)


def exit_table(exits: dict[str, dict], width: int = 16) -> list[str]:
    """The early-exit part of a study's table: per row, the chosen rule's accuracy, mean T and energy
    against fixed T at the same mean latency (images split between floor and ceil of the mean T) and the
    fixed largest T, with the paired differences."""
    first = next(iter(exits.values()))
    T = int(first["full"]["mean_T"]["mean"])
    lines = [
        f"per-image early exit: each network's rule chosen on {first['held_out_images']} held-out training images "
        f"(smallest mean T within {100 * first['tolerance']:g} points of T={T} there); fixed T at the same mean T "
        "runs a share of the images one step longer; mean ± 95% CI over seeds",
        f"{'row':<{width}}{'mean T':>14}{'adaptive %':>16}{'fixed, same T %':>18}{'adaptive - fixed':>24}"
        f"{'E/E_ANN adaptive':>18}{'fixed':>14}{f'T={T} %':>16}{f'E/E_ANN T={T}':>14}",
    ]
    for row, e in exits.items():
        difference = e["adaptive_minus_matched"]["accuracy"]
        lines.append(
            f"{row:<{width}}{_pm(e['adaptive']['mean_T'], 1):>14}{_pm(e['adaptive']['accuracy'], accuracy=True):>16}"
            f"{_pm(e['matched']['accuracy'], accuracy=True):>18}{_pm(difference) + f' [{_p(difference)}]':>24}"
            f"{_pm(e['adaptive']['energy'], 1, 3):>18}{_pm(e['matched']['energy'], 1, 3):>14}"
            f"{_pm(e['full']['accuracy'], accuracy=True):>16}{_pm(e['full']['energy'], 1, 3):>14}"
        )
    for row, e in exits.items():
        chosen = ", ".join(f"{rule} ({e['rules'].count(rule)})" for rule in dict.fromkeys(e["rules"]))
        lines.append(f"{row}: rules chosen {chosen}")
    return lines


def _p(stat: dict) -> str:
    """'p; Holm p' of one paired difference, or what replaces it where a t-test is not defined."""
    if stat["p_value"] is None:
        return "one seed" if stat["n"] < 2 else "the same on every seed"
    holm_p = stat.get("p_holm")
    return f"{stat['p_value']:.2g}" + ("" if holm_p is None else f"; {holm_p:.2g}")


def plot_study(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = list(range(1, summary["study"]["T"] + 1))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colour = {row: f"C{i}" for i, row in enumerate(summary["rows"])}  # one colour per row in every panel
    for row, r in summary["rows"].items():
        for ax, key, scale, limits in ((axes[0], "snn_accuracy", 100.0, (0.0, 100.0)),
                                       (axes[2], "mean_layer_error", 1.0, (0.0, math.inf))):  # fmt: skip
            mean, low, high = _band(r[key], steps, scale, limits)
            ax.plot(steps, mean, label=row, color=colour[row])
            ax.fill_between(steps, low, high, color=colour[row], alpha=0.2)
    for row, d in summary["differences"].items():
        mean, low, high = _band(d["snn_accuracy"], steps, 100.0, (-100.0, 100.0))
        axes[1].plot(steps, mean, label=f"{row} - {summary['baseline']}", color=colour[row])
        axes[1].fill_between(steps, low, high, color=colour[row], alpha=0.2)
    axes[1].axhline(0, color="black", linewidth=0.8)
    titles = (
        "SNN accuracy (%), 95% CI",
        f"paired difference to {summary['baseline']} (points)",
        "mean per-layer conversion error / threshold",
    )
    for ax, title in zip(axes, titles):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("time steps T")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _band(stats: dict, steps: list[int], scale: float, limits: tuple[float, float]):
    """Mean and its CI band per T, times `scale`, the band clipped to what the quantity can be (an accuracy
    band does not pass 100 %)."""
    mean, low, high = [], [], []
    for t in steps:
        m, h = stats[str(t)]["mean"], stats[str(t)]["half_width"] or 0.0
        mean.append(scale * m)
        low.append(max(limits[0], scale * (m - h)))
        high.append(min(limits[1], scale * (m + h)))
    return mean, low, high
