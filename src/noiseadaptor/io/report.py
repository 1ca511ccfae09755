"""Accuracy-vs-T and energy tables, and plots."""

from __future__ import annotations

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
        first=("ANN", lambda r: f"{100 * r['ann_accuracy']:.2f}"),
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
