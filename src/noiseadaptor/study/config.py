"""What a study is: `StudyConfig`, a RunConfig trained for every method and seed, and how its cells are
simulated and compared."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..checks import checked_type, positive_int
from ..methods import get_method
from ..runconfig import RunConfig, setting
from ..snn.stopping import ExitRule, parse_rule
from .cell import Row

RUN_FIELDS = ("dataset", "data_dir", "download", "model", "p", "epochs", "lr", "weight_decay", "batch_size",
              "workers", "data_on_device")  # fmt: skip
"""The RunConfig fields a study reads. Every cell is the study's `run` with a method, a seed and that method's
learning rate (`StudyConfig.cell_run`); the float network is `StudyConfig.float_run`."""

STUDY_RUN = RunConfig(model="cifar-resnet20", epochs=3, workers=0)
"""A study's run settings unless given: a short QAT of a small network."""


@dataclass(frozen=True)
class StudyConfig:
    """A study: a RunConfig (`run`; the fields of RUN_FIELDS) trained for every method and seed, plus how its
    cells are simulated and compared. variants: run-time rows added for each method in `variant_methods`:
    "negative" (negative spikes), "cos<rho>" (COS offset spikes with rho pre-steps, e.g. "cos4"),
    "srp<tau>" (SRP with tau pre-steps, e.g. "srp4"), several of these joined by "+" ("negative+cos4"),
    "phase2" (dual-phase Phase II calibration at `phase2_T`). As a dict (recipes, study.json) it is flat:
    the run's fields beside the study's own."""

    run: RunConfig = STUDY_RUN
    methods: tuple[str, ...] = setting(("na", "no-noise", "qcfs"), "conversion methods trained per seed")
    seeds: tuple[int, ...] = setting(
        tuple(range(8)), "seeds (each: every method from the same float net, data order and calibration batch)"
    )
    float_epochs: int = setting(6, "epochs of the float network the cells start from (one, at seed 0, by default)")
    float_lr: float = setting(0.1, "its learning rate")
    float_per_seed: bool = setting(
        False, "each seed starts from its own float network, trained at that seed: the intervals then hold the "
        "float network's variance too (a study's answer can depend on its one float network)"
    )  # fmt: skip
    method_lr: tuple[str, ...] = setting(
        (), "a method's own QAT learning rate, METHOD=LR (e.g. qcfs=0.01; the others train at --lr)"
    )
    T: int = setting(16, "simulate and report every T = 1..this")
    test_images: int = setting(2000, "test images, spread evenly over the test set (0: all)")
    baseline: str = setting("no-noise", "the method every row is paired against")
    contrasts: tuple[str, ...] = setting(
        (), "more paired differences, ROW:BASE (e.g. 'na:qcfs'), beside every row against the baseline"
    )
    variants: tuple[str, ...] = setting(
        (), "run-time rows per trained network: negative, cos<rho>, srp<tau>, joined by + (negative+cos4), phase2"
    )
    variant_methods: tuple[str, ...] = setting(("na",), "the methods that get the variant rows")
    phase2_T: int = setting(4, "the T that Phase II calibrates for")
    exit: tuple[str, ...] = setting(
        (),
        "per-image early exit: candidate rules (confidence=C, margin=M, min_steps=N, comma-separated); each "
        "network picks, on held-out training images, the one with the smallest mean T within --exit-tolerance "
        "of its accuracy at --T, and is paired with a fixed T at the same mean latency",
    )
    exit_holdout: int = setting(1000, "with --exit: training images kept out of all training (the float net's too)")
    exit_tolerance: float = setting(0.005, "with --exit: how far (a fraction) the chosen rule's held-out accuracy "
                                    "may fall below the fixed --T's")  # fmt: skip
    device: str | None = setting(None, "cpu, cuda, ... (default: cuda if available)")

    def __post_init__(self) -> None:
        if not isinstance(self.run, RunConfig):
            raise ValueError(f"run must be a RunConfig, got {type(self.run).__name__}")
        unread = [f.name for f in dataclasses.fields(RunConfig) if f.name not in (*RUN_FIELDS, "method", "seed")
                  and getattr(self.run, f.name) != getattr(STUDY_RUN, f.name)]  # fmt: skip
        if unread:
            raise ValueError(f"a study does not read {', '.join(unread)}; its run settings are {', '.join(RUN_FIELDS)}")
        for f in dataclasses.fields(self)[1:]:
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
        spelled = ("+".join(variant_names(variant_row(v).options)) or v for v in self.variants)  # 'cos4+negative'
        object.__setattr__(self, "variants", tuple(dict.fromkeys(spelled)))  # is 'negative+cos4'; phase2 stays
        self.exit_rules()  # validates
        for name in ("T", "phase2_T", "exit_holdout"):
            positive_int(getattr(self, name), name)
        if not 0 <= self.exit_tolerance < 1:
            raise ValueError(f"exit_tolerance is a fraction of the images in [0, 1), got {self.exit_tolerance!r}")
        unused = [f.name for f in dataclasses.fields(self) if f.name in ("exit_holdout", "exit_tolerance")
                  and getattr(self, f.name) != f.default]  # fmt: skip
        if unused and not self.exit:
            raise ValueError(f"{' and '.join(unused)} only matter with exit rules: give them (exit), or leave it out")
        for name in ("float_epochs", "test_images"):
            positive_int(getattr(self, name), name, zero=True)
        lrs = self.method_lrs()  # validates
        self.contrast_pairs()
        trains: dict[str, str] = {}  # 'na' and 'na[p=2]' at the run's p = 2 train one network twice
        for m in self.methods:
            run = dataclasses.replace(self.run, method=m, lr=lrs[m])
            same = trains.setdefault(json.dumps(cell_settings(run), sort_keys=True), m)
            if same != m:
                raise ValueError(f"methods {same} and {m} train the same network here (p={run.p}): give one")

    @classmethod
    def from_dict(cls, values: dict, source: str = "study", defaults: RunConfig = STUDY_RUN) -> "StudyConfig":
        """A StudyConfig from its flat dict (a recipe, study.json): RUN_FIELDS go to `run` (over `defaults`),
        the rest are the study's own fields; other keys are refused."""
        own = {f.name for f in dataclasses.fields(cls)} - {"run"}
        unknown = sorted(set(values) - own - set(RUN_FIELDS))
        if unknown:
            raise ValueError(f"{source}: unknown keys {unknown}; the keys are {', '.join([*RUN_FIELDS, *own])}")
        run = {k: v for k, v in values.items() if k in RUN_FIELDS}
        try:
            return cls(run=dataclasses.replace(defaults, **run), **{k: v for k, v in values.items() if k in own})
        except (ValueError, TypeError) as err:
            raise ValueError(f"{source}: {err}") from None

    def to_dict(self) -> dict:
        """The flat dict of `from_dict` (study.json), in JSON's types."""
        run = {k: getattr(self.run, k) for k in RUN_FIELDS}
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "run"}
        return json.loads(json.dumps({**run, **own}))

    def cell_run(self, method: str, seed: int) -> RunConfig:
        """What the cell (method, seed) trains: the study's run with that method, seed and learning rate."""
        return dataclasses.replace(self.run, method=method, seed=seed, lr=self.method_lrs()[method])

    def float_run(self, seed: int = 0) -> RunConfig:
        """What the float network the cells of `seed` start from trains: the study's run, float, at seed 0 (at
        `seed` with float_per_seed)."""
        seed = seed if self.float_per_seed else 0
        return dataclasses.replace(self.run, method="float", seed=seed, epochs=self.float_epochs, lr=self.float_lr)

    def float_name(self, seed: int) -> str:
        """The file stem of the float network the cells of `seed` start from: 'float', or 'float-seed<seed>'."""
        return f"float-seed{seed}" if self.float_per_seed else "float"

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
        return {m: own.get(m, self.run.lr) for m in self.methods}

    def exit_rules(self) -> tuple[ExitRule, ...]:
        """The candidate exit rules of `exit`, distinct, in the order given."""
        return tuple(dict.fromkeys(parse_rule(str(text)) for text in self.exit))

    def rows(self) -> list[str]:
        """Row names: each method, then '<method>+<variant>' for the variant methods."""
        return [*self.methods, *(f"{m}+{v}" for m in self.variant_methods if m in self.methods for v in self.variants)]


def cell_settings(run: RunConfig) -> dict:
    """What a cell trains under: its lr and its full quantizer and optimiser settings."""
    info = run.method_info
    return json.loads(json.dumps({"lr": run.lr, "quant": dataclasses.asdict(info.quant(run)),
                                  "optimizer": dataclasses.asdict(info.optimizer(run))}))  # fmt: skip


def split_row(row: str) -> tuple[str, str]:
    """A row name's method and variant: 'na[p=3]+negative+cos4' -> ('na[p=3]', 'negative+cos4'); a method's
    own row has the variant ''. (A variant holds no brackets; the method's settings end at its ']'.)"""
    cut = row.index("]") + 1 if "[" in row and "]" in row else (row.index("+") if "+" in row else len(row))
    if row[cut : cut + 1] not in ("", "+"):
        raise ValueError(f"row {row!r}: a method, then '+' and a variant (e.g. 'na[p=4]+negative')")
    return row[:cut], row[cut + 1 :]


def _canonical_row(row: str) -> str:
    """A row name with its method in canonical spelling ('qcfs[noise=uniform]+negative')."""
    method, variant = split_row(row)
    return get_method(method).name + ("+" + variant if variant else "")


def variant_names(options: dict) -> list[str]:
    """The variant names that spell simulate() correction `options` (the inverse of `variant_row`):
    {"negative_spikes": True, "offset_spikes": 4} -> ["negative", "cos4"]."""
    names = ["negative"] if options.get("negative_spikes") else []
    names += [f"cos{options['offset_spikes']}"] if options.get("offset_spikes") else []
    return names + ([f"srp{options['srp']}"] if options.get("srp") else [])


def variant_row(name: str, phase2_T: int = 4) -> Row:
    """The row a variant name spells: one correction, or several joined by '+' ('negative+cos4')."""
    if name == "phase2":
        return Row(calibrate_T=phase2_T)
    options = {}
    for part in name.split("+"):
        option = _correction(part, name)
        if option[0] in options:
            raise ValueError(f"variant {name!r} gives {part.rstrip('0123456789')} twice")
        options.update([option])
    if "offset_spikes" in options and "srp" in options:
        raise ValueError(f"variant {name!r}: COS and SRP are both two-stage corrections; join one with negative")
    return Row(options)


def _correction(part: str, name: str) -> tuple[str, object]:
    if part == "negative":
        return "negative_spikes", True
    for prefix, option in (("cos", "offset_spikes"), ("srp", "srp")):
        if part.startswith(prefix) and part[3:].isdigit() and int(part[3:]) > 0:
            return option, int(part[3:])
    raise ValueError(
        f"unknown variant {name!r}: negative, cos<rho> (e.g. cos4), srp<tau> (e.g. srp4), several of them joined "
        "by '+' (negative+cos4), or phase2"
    )
