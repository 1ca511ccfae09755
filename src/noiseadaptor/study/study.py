"""`noiseadaptor compare`: a paired, multi-seed study of conversion methods, with confidence intervals.

Design. One float network is trained once (seed 0) and every cell starts from it. For each seed, every
method is trained by QAT from that float network with the same data order, the same calibration batch
and the same seed (so the seed-to-seed spread of the data order, the noise draws and the calibration
cancels in the per-seed differences between methods), converted, and simulated on the same test images
at every T up to --T. Run-time variants of a trained network (negative spikes, COS offset spikes with rho
pre-steps, dual-phase Phase II calibration at one T) are extra rows of the same cell, not new trainings.

Every cell (one seed, one method) is written to OUT/cells/<method>-seed<seed>.json when done, and its
QAT checkpoints each epoch, so a killed study continues where it stopped; `--report` re-prints the
tables and plots from the cells.

Statistics (`summarize`): per row and T, the per-seed accuracies, their mean and 95 % t-interval; per
row against a baseline, the per-seed paired difference, its mean, 95 % t-interval and the two-sided
paired t-test's p-value; the agreement of SNN and quantized-ANN predictions; the per-layer conversion
error. COS rows report T as the COS paper counts it (main steps) and honestly (T + rho).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..ann.models import create_model
from ..checks import checked_type, positive_int
from ..data import DeviceLoader, get_dataset, spread_subset
from ..io.files import InUse, atomic_path, exclusive, write_json
from ..methods import get_method
from ..runconfig import setting
from ..training.loop import fit
from .cell import Row, method_cell, quant_config


@dataclass(frozen=True)
class StudyConfig:
    """What a study compares. methods: conversion methods, trained per seed. variants: run-time rows added
    for each method in `variant_methods`: "negative" (negative spikes), "cos<rho>" (COS offset spikes with
    rho pre-steps, e.g. "cos4"), "srp<tau>" (SRP with tau pre-steps, e.g. "srp4"), "phase2" (dual-phase
    Phase II calibration at `phase2_T`)."""

    dataset: str = setting("cifar10", "data set")
    data_dir: str | None = setting(None, "data folder (torchvision layout or image-folder tree)")
    model: str = setting("cifar-resnet20", "architecture")
    methods: tuple[str, ...] = setting(("na", "no-noise", "qcfs"), "conversion methods trained per seed")
    seeds: tuple[int, ...] = setting(
        tuple(range(8)), "seeds (each: every method from the same float net, data order and calibration batch)"
    )
    p: int = setting(2, "quantization levels above zero")
    float_epochs: int = setting(6, "epochs of the float network every cell starts from (seed 0)")
    float_lr: float = setting(0.1, "its learning rate")
    epochs: int = setting(3, "QAT epochs per cell")
    lr: float = setting(0.05, "QAT learning rate (SGD, cosine)")
    method_lr: tuple[str, ...] = setting(
        (), "a method's own QAT learning rate, METHOD=LR (e.g. qcfs=0.01; the others train at --lr)"
    )
    weight_decay: float = setting(5e-4, "weight decay")
    batch_size: int = setting(128, "training batch size")
    T: int = setting(16, "simulate and report every T = 1..this")
    test_images: int = setting(2000, "test images, spread evenly over the test set (0: all)")
    baseline: str = setting("no-noise", "the method every row is paired against")
    contrasts: tuple[str, ...] = setting(
        (), "more paired differences, ROW:BASE (e.g. 'na:qcfs'), beside every row against the baseline"
    )
    variants: tuple[str, ...] = setting((), "run-time rows per trained network: negative, cos<rho>, srp<tau>, phase2")
    variant_methods: tuple[str, ...] = setting(("na",), "the methods that get the variant rows")
    phase2_T: int = setting(4, "the T that Phase II calibrates for")
    workers: int = setting(0, "data loader processes")
    device: str | None = setting(None, "cpu, cuda, ... (default: cuda if available)")
    data_on_device: bool = setting(False, "hold the training set on the device and augment there (CIFAR, MNIST)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, checked_type(f.name, getattr(self, f.name), f.type))
        if not self.methods:
            raise ValueError("a study needs at least one method")
        canonical = {m: get_method(m).name for m in self.methods}  # a spelled variant under one name
        object.__setattr__(self, "methods", tuple(dict.fromkeys(canonical.values())))
        object.__setattr__(self, "baseline", canonical.get(self.baseline, self.baseline))
        object.__setattr__(
            self, "variant_methods", tuple(canonical.get(m, get_method(m).name) for m in self.variant_methods)
        )
        for m in self.methods:
            if not get_method(m).converts:
                raise ValueError(f"compare trains conversion methods; {m} is {get_method(m).family}")
        if self.baseline not in self.methods:
            raise ValueError(f"the baseline {self.baseline!r} must be one of the methods {list(self.methods)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, at least one; got {list(self.seeds)}")
        for v in self.variants:
            _variant(v)
        for name in ("p", "T", "batch_size", "phase2_T"):
            positive_int(getattr(self, name), name)
        for name in ("float_epochs", "epochs", "test_images", "workers"):
            positive_int(getattr(self, name), name, zero=True)
        self.method_lrs()  # validates
        self.contrast_pairs()

    def contrast_pairs(self) -> list[tuple[str, str]]:
        """(row, base) of each `contrasts` entry, both rows of the study."""
        rows, pairs = self.rows(), []
        for entry in self.contrasts:
            row, _, base = str(entry).rpartition(":")
            row, base = (_canonical_row(r) for r in (row, base))
            if row not in rows or base not in rows or row == base:
                raise ValueError(f"contrast {entry!r}: expected ROW:BASE, two different rows of the study {rows}")
            pairs.append((row, base))
        return pairs

    def method_lrs(self) -> dict[str, float]:
        """{method: QAT learning rate} from `method_lr` (METHOD=LR entries); methods not named train at `lr`."""
        own = {}
        for entry in self.method_lr:
            method, _, value = str(entry).rpartition("=")
            try:
                lr = float(value)
                method = get_method(method).name
            except ValueError:
                lr = -1.0
            if method not in self.methods or not lr > 0:
                raise ValueError(f"method_lr {entry!r}: expected METHOD=LR with a method of the study and LR > 0")
            own[method] = lr
        return {m: own.get(m, self.lr) for m in self.methods}

    def rows(self) -> list[str]:
        """Row names: each method, then '<method>+<variant>' for the variant methods."""
        return [*self.methods, *(f"{m}+{v}" for m in self.variant_methods if m in self.methods for v in self.variants)]


def _canonical_row(row: str) -> str:
    """A row name with its method in canonical spelling ('qcfs[noise=uniform]+negative')."""
    head, plus, tail = row.rpartition("+")
    if plus and "[" not in tail and "]" not in tail:
        return get_method(head).name + "+" + tail
    return get_method(row).name


def _variant(name: str, phase2_T: int = 4) -> Row:
    """The row a variant name spells."""
    if name == "negative":
        return Row({"negative_spikes": True})
    for prefix, option in (("cos", "offset_spikes"), ("srp", "srp")):
        if name.startswith(prefix) and name[3:].isdigit() and int(name[3:]) > 0:
            return Row({option: int(name[3:])})
    if name == "phase2":
        return Row(calibrate_T=phase2_T)
    raise ValueError(f"unknown variant {name!r}: negative, cos<rho> (e.g. cos4), srp<tau> (e.g. srp4) or phase2")


# ---------------------------------------------------------------------------------------------------
# Running the cells


def run_study(config: StudyConfig, out: Path, progress: bool = False, log=print) -> dict:
    """Train and simulate every missing cell of the study (resuming killed ones), then summarize it into
    OUT/compare.json. Returns the summary."""
    out = Path(out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    _check_same_study(config, out)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    splits = get_dataset(config.dataset, config.data_dir)
    test = DataLoader(spread_subset(splits.test, config.test_images or None), batch_size=500)
    start = time.time()
    with exclusive(out / "float-network", wait=True):  # processes started together: one trains, the rest wait
        float_model = _float_network(config, splits, out, device, progress, log)
    for seed in config.seeds:
        for method in config.methods:
            path = out / "cells" / f"{method}-seed{seed}.json"
            try:
                with exclusive(path):  # several processes may share a study: each cell goes to one of them
                    cell = _missing_cell(config, method, seed, path, splits, float_model, test, device, progress, log)
            except InUse:
                log(f"[{method} seed {seed}] another process is training it: skipped here")
                continue
            if cell is None:
                continue
            if "diverged" in cell:
                log(f"[{method} seed {seed}] diverged: {cell['diverged']}")
                continue
            log(
                f"[{method} seed {seed}] ANN {100 * cell['ann_accuracy']:.2f}%, SNN T={config.T} "
                f"{100 * cell['rows'][method]['snn_accuracy'][str(config.T)]:.2f}% ({time.time() - start:.0f} s)"
            )
    summary = summarize(config, load_cells(out))
    write_json(summary, out / "compare.json")
    return summary


def cell_settings(config: StudyConfig, method: str) -> dict:
    """What a cell of `method` trains under: its lr and its full quantizer and optimiser settings."""
    lr = config.method_lrs()[method]
    optimizer = get_method(method).optimizer_preset(lr=lr, weight_decay=config.weight_decay)
    return json.loads(json.dumps({"lr": lr, "quant": dataclasses.asdict(quant_config(method, config.p)),
                                  "optimizer": dataclasses.asdict(optimizer)}))  # fmt: skip


def _missing_cell(config, method, seed, path, splits, float_model, test, device, progress, log) -> dict | None:
    """Train and simulate the cell of (method, seed) into `path` unless it is there, trained under exactly
    the settings the study gives it now; returns it, or None when it was there."""
    if path.exists():
        wanted, kept = cell_settings(config, method), json.loads(path.read_text())
        differ = sorted(k for k in wanted if kept.get(k) != wanted[k])
        if not differ:
            return None
        log(f"[{method} seed {seed}] its cell was trained under other settings ({', '.join(differ)}): again")
    torch.manual_seed(seed)
    train = _train_loader(config, splits, seed, device)
    cell = _cell(config, method, seed, float_model, train, test, path.parent.parent, device, progress)
    write_json(cell, path)
    return cell


def _check_same_study(config: StudyConfig, out: Path) -> None:
    saved = out / "study.json"
    settings = dataclasses.asdict(config)
    if saved.exists():
        old = json.loads(saved.read_text())
        fixed = {
            k: v
            for k, v in settings.items()
            if k not in ("seeds", "methods", "data_dir", "workers", "baseline", "contrasts", "device", "method_lr")
        }  # method_lr is per method: each cell records its lr, and one trained at another is trained again
        defaults = json.loads(json.dumps(dataclasses.asdict(StudyConfig())))  # settings added since it was written
        clash = {
            k: (old.get(k, defaults[k]), v)
            for k, v in json.loads(json.dumps(fixed)).items()
            if old.get(k, defaults[k]) != v
        }
        if clash:
            detail = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in clash.items())
            raise ValueError(f"{out} holds a study with other settings ({detail}); use another --out")
        # what the folder holds: every seed and method any run on it has asked for (processes share a study)
        settings["seeds"] = sorted(set(old.get("seeds", [])) | set(settings["seeds"]))
        settings["methods"] = list(dict.fromkeys([*old.get("methods", []), *settings["methods"]]))
    write_json(settings, saved)


def _train_loader(config: StudyConfig, splits, seed: int, device: torch.device):
    if config.data_on_device:
        return DeviceLoader.from_dataset(splits.train, config.batch_size, config.dataset, device, train=True, seed=seed)
    return splits.loaders(config.batch_size, seed=seed, num_workers=config.workers)[0]


def _float_network(config: StudyConfig, splits, out: Path, device: torch.device, progress: bool, log):
    torch.manual_seed(0)
    train = _train_loader(config, splits, 0, device)
    model = create_model(config.model, splits.num_classes, splits.in_channels)
    log(f"[float] {config.model}, {config.float_epochs} epochs (shared by every cell)")
    begin = time.time()
    fit(
        model,
        train,
        config.float_epochs,
        lr=config.float_lr,
        weight_decay=config.weight_decay,
        device=device,
        progress=progress,
        desc="float",
        checkpoint=out / "float.pt",
        resume=True,
        config={"model": config.model, "dataset": config.dataset, "seed": 0},
    )
    if not (out / "float_seconds.json").exists():  # the time of the run that trained it (a resume reloads it)
        write_json({"seconds": time.time() - begin}, out / "float_seconds.json")
    return model.eval()


def _cell(
    config: StudyConfig, method: str, seed: int, float_model, train, test, out: Path, device, progress: bool
) -> dict:
    """One seed of one method (`method_cell`, as `run` trains it), with its variant rows; what a study keeps."""
    lr = config.method_lrs()[method]
    name = f"{method}-seed{seed}" + ("" if lr == config.lr else f"-lr{lr:g}")  # its QAT checkpoint
    variants = config.variants if method in config.variant_methods else ()
    rows = {method: Row(), **{f"{method}+{v}": _variant(v, config.phase2_T) for v in variants}}
    cell, _ = method_cell(  # the seed's first batch calibrates (None): the same for every method
        float_model, method, train, test, p=config.p, epochs=config.epochs, lr=lr, weight_decay=config.weight_decay,
        T=config.T, seed=seed, device=device, progress=progress, checkpoint=out / "qat" / f"{name}.pt",
        rows=rows, reference=True, config={"method": method, "p": config.p, "seed": seed, "model": config.model},
    )  # fmt: skip
    cell.pop("scales", None)
    for row, result in cell["rows"].items():
        cell["rows"][row] = {
            "snn_accuracy": result["snn_accuracy"],
            "agreement": result["agreement"],
            "layer_error": result["layer_error"],
            "pre_steps": result["corrections"]["pre_steps"],
        }
    return json.loads(json.dumps(cell))  # keys as JSON has them (T as strings), as a reloaded cell


def load_cells(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "cells").glob("*.json"))]


# ---------------------------------------------------------------------------------------------------
# Statistics


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
    if len(diffs) >= 2 and any(d != diffs[0] for d in diffs):
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
        method = _method_of(row)
        seeds = [s for s in config.seeds if (method, s) in by and row in by[(method, s)]["rows"]]
        if not seeds:
            continue
        data = [by[(method, s)]["rows"][row] for s in seeds]
        pre = data[0]["pre_steps"]
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
    base = config.baseline
    differences = {row: _contrast(by, config, row, base, steps) for row in rows if row != base}
    contrasts = {f"{row} - {other}": _contrast(by, config, row, other, steps) for row, other in config.contrast_pairs()}
    seconds = {part: sum(c.get("seconds", {}).get(part, 0.0) for c in cells) for part in ("qat", "simulate")}
    return {
        "format": "noiseadaptor-compare-v1",
        "study": {**json.loads(json.dumps(dataclasses.asdict(config))), "method_lrs": config.method_lrs()},
        "seconds": seconds,
        "confidence": 0.95,
        "complete_seeds": complete,
        "baseline": base,
        "rows": rows,
        "differences": {row: d for row, d in differences.items() if d is not None},
        "contrasts": {name: d for name, d in contrasts.items() if d is not None},
    }


def _contrast(by: dict, config: StudyConfig, row: str, base: str, steps: list[str]) -> dict | None:
    """Row minus base, paired over the seeds where both trained (a method that diverged at some seed leaves
    that seed out of its own differences, not out of the others'); None when no seed has both. Holm's
    adjustment of the p-values is over the report's T (powers of two), `p_holm`."""
    method, base_method = _method_of(row), _method_of(base)
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
    for key in ("snn_accuracy", "mean_layer_error"):
        tested = [t for t in steps if int(t) & (int(t) - 1) == 0]
        for t, adjusted in zip(tested, holm([out[key][t]["p_value"] for t in tested])):
            out[key][t]["p_holm"] = adjusted
    return out


def _method_of(row: str) -> str:
    head, plus, tail = row.rpartition("+")
    return head if plus and "[" not in tail and "]" not in tail else row


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: no test, left out of the family)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        out[i] = running
    return out


# ---------------------------------------------------------------------------------------------------
# Tables and pictures


def _pm(stat: dict, scale: float = 100.0, digits: int = 2) -> str:
    if stat["mean"] is None:
        return "-"
    if stat["half_width"] is None:
        return f"{scale * stat['mean']:.{digits}f}"
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['half_width']:.{digits}f}"


def _mean_error(row: dict, t: str) -> float:
    errors = row["layer_error"][t]
    return sum(errors.values()) / len(errors)


def report_table(summary: dict, steps: Sequence[int] = (1, 2, 4, 8, 16, 32, 64)) -> str:
    """Accuracy (mean ± 95 % half-width, %) per row and T, then the paired differences (each row against the
    baseline, then the study's contrasts) with their p-values, Holm-adjusted over the T shown beside them."""
    T = summary["study"]["T"]
    steps = [t for t in steps if t <= T]
    n = len(summary["complete_seeds"])
    pairs = {**{f"{row} - {summary['baseline']}": d for row, d in summary["differences"].items()},
             **summary.get("contrasts", {})}  # fmt: skip
    width = max([16, *(len(name) + 2 for name in [*summary["rows"], *pairs])])
    header = f"{'':<{width}}" + "".join(f"{'T=' + str(t):>16}" for t in steps)
    lines = [
        f"SNN top-1 (%), mean ± 95% CI half-width over seeds ({n} complete)",
        f"{'row':<{width}}{'ANN':>16}" + header[width:],
    ]
    for row, r in summary["rows"].items():
        lines.append(
            f"{row:<{width}}{_pm(r['ann_accuracy']):>16}"
            + "".join(f"{_pm(r['snn_accuracy'][str(t)]):>16}" for t in steps)
        )
        if r["pre_steps"]:
            lines.append(f"{'':<{width}}(T counts main steps; run = T + {r['pre_steps']})")
    own = {m: lr for m, lr in summary["study"].get("method_lrs", {}).items() if lr != summary["study"]["lr"]}
    if own:
        lines.append("QAT at its own lr (method_lr): " + ", ".join(f"{m} {lr:g}" for m, lr in own.items()))
    for key, title in (
        ("snn_accuracy", "paired difference of SNN top-1 (points)"),
        ("mean_layer_error", "paired difference of the mean per-layer conversion error (% of threshold)"),
    ):
        lines += ["", f"{title}, mean ± 95% CI [p-value; Holm over T={','.join(map(str, steps))}]"]
        lines.append(f"{'difference':<{width}}" + "  ".join(f"{'T=' + str(t):<30}" for t in steps).rstrip())
        for name, d in pairs.items():
            if key in d:  # studies summarised before the layer error was paired have none
                cells = [_pm(d[key][str(t)]) + f" [{_p(d[key][str(t)])}]" for t in steps]
                lines.append(f"{name:<{width}}" + "  ".join(f"{c:<30}" for c in cells).rstrip())
    return "\n".join(lines)


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
