"""Accuracy-vs-T tables and plots."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

TABLE_T = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def accuracy_table(rows: dict[str, dict], steps: list[int] | None = None) -> str:
    """rows: {method: {"ann_accuracy": float, "snn_accuracy": {T: float}}} -> a fixed-width text table (%)."""
    present = sorted({t for r in rows.values() for t in r.get("snn_accuracy", {})})
    steps = steps or [t for t in TABLE_T if t in present] or present
    width = max(len("method"), *(len(m) for m in rows))
    header = f"{'method':<{width}}  {'ANN':>6}" + "".join(f"  {'T=' + str(t):>6}" for t in steps)
    lines = [header, "-" * len(header)]
    for method, row in rows.items():
        snn = row.get("snn_accuracy", {})
        cells = "".join(f"  {100 * snn[t]:6.2f}" if t in snn else f"  {'':>6}" for t in steps)
        lines.append(f"{method:<{width}}  {100 * row['ann_accuracy']:6.2f}{cells}")
    return "\n".join(lines)


def plot_accuracy(rows: dict[str, dict], path: str | Path, title: str = "SNN accuracy vs time steps") -> None:
    """One line per method (SNN accuracy against T, log2 axis) and a dotted line at its ANN accuracy."""
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


def write_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=False))


class atomic_path:
    """Write to a temporary file beside `path`, then rename: a killed run never leaves half a file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __enter__(self) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        os.close(fd)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)
