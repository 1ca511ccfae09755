"""What the sub-commands share: flag groups, recipes, tables and results files."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
import yaml

from ..checks import positive_int
from ..data import DATASETS
from ..io.files import check_writable, write_json
from ..io.report import accuracy_table, energy_table, plot_accuracy
from ..methods import methods_help
from ..progress import Progress
from ..runconfig import RunConfig
from ..snn.stopping import parse_rule
from ..study.config import RUN_FIELDS, StudyConfig, variant_names

DESCRIPTION = """\
Build low-latency spiking neural networks (SNNs) from ordinary deep networks with Noise Adaptor:
train an activation-quantized ANN whose ReLU is s*round(clip(v/s + noise, 0, p)), convert it to
integrate-and-fire neurons (threshold p*s), and measure SNN accuracy at every time step T."""


def simulation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--T", type=int, default=256, help="simulate T = 1..this many steps (default: %(default)s)")
    correction_args(p)
    p.add_argument("--no-synops", action="store_true", help="skip counting synaptic operations and energy")


def correction_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--negative-spikes",
        action="store_true",
        help="run-time correction: QFFS negative spikes (Li, Ma & Furber 2022)",
    )
    p.add_argument(
        "--offset-spikes",
        type=int,
        default=0,
        metavar="RHO",
        help="run-time correction: COS two-stage offset spikes with RHO pre-simulation steps "
        "(not counted in T, as in the COS paper); 0 = off (default)",
    )
    p.add_argument(
        "--srp",
        type=int,
        default=0,
        metavar="TAU",
        help="run-time correction: SRP (Hao et al., AAAI 2023) silences neurons whose residual membrane after "
        "TAU pre-simulation steps is not positive (not counted in T, as in the paper); 0 = off (default)",
    )


def command_parser(
    commands, name: str, help: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """A sub-command's parser, added to the set `commands`: a prefix of a flag is an error, not that flag;
    the description and epilog print as written."""
    return commands.add_parser(name, allow_abbrev=False, help=help, description=description, epilog=epilog,
                               formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip


def exit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--exit",
        nargs="+",
        default=[],
        metavar="RULE",
        help="per-image early exit, beside the fixed-T results: an image stops at the first step whose mean output "
        "has softmax confidence >= C and/or top-1 minus top-2 probability >= M; RULE is confidence=C, margin=M, "
        "or both with min_steps=N, comma-separated; several rules are read from one simulation",
    )


def correction_options(args: argparse.Namespace) -> dict:
    positive_int(args.offset_spikes, "--offset-spikes", zero=True)
    positive_int(args.srp, "--srp", zero=True)
    if args.offset_spikes and args.srp:
        raise ValueError("--offset-spikes (COS) and --srp (SRP) are both two-stage corrections: give one")
    return {"negative_spikes": args.negative_spikes, "offset_spikes": args.offset_spikes, "srp": args.srp}


def row_label(method: str, options: dict) -> str:
    """A table row's name with its run-time corrections, as a study spells its variants ('na+negative+cos4')."""
    return "+".join([method, *variant_names(options)])


def simulate_options(args: argparse.Namespace) -> dict:
    rules = [parse_rule(text) for text in getattr(args, "exit", [])]
    return {**correction_options(args), "synops": not args.no_synops, **({"exit": rules} if rules else {})}


def print_tables(rows: dict, title: str) -> None:
    print(title)
    print(accuracy_table(rows))
    for name, row in rows.items():
        if row.get("exits"):
            ann = row["ann_energy_pj_per_sample"]
            print(f"\n{name}, per-image early exit (an image stops when the rule holds; energy to its exit)")
            print(f"  {'rule':<40}{'top-1 %':>9}{'mean T':>9}{'E_SNN/E_ANN':>13}")
            for e in row["exits"]:
                energy = e["energy_pj_per_sample"] / ann
                print(f"  {e['rule']:<40}{100 * e['accuracy']:9.2f}{e['mean_T']:9.2f}{energy:13.3f}")
    energy = energy_table(rows)
    corrections = next((r["corrections"] for r in rows.values() if r.get("corrections", {}).get("pre_steps")), {})
    pre = corrections.get("pre_steps", 0)
    if energy:
        print("\nEnergy per image, E_SNN / E_ANN (Horowitz 45 nm: 4.6 pJ/MAC, 0.9 pJ/SOP)")
        print(energy)
        if pre:
            print(f"\nThe same without the {pre} pre-steps (as the COS and SRP papers count)")
            print(energy_table(rows, pre_steps=False))
    if pre:
        name = "offset spikes (COS)" if corrections.get("offset_spikes_pre_steps") else "SRP"
        print(
            f"\n{name}: {pre} pre-simulation steps per image, not counted in T (counted in the first energy "
            f"table): each image takes T + {pre} steps"
        )


def common_args(p: argparse.ArgumentParser, out: str | None, seed: bool = True) -> None:
    if seed:
        p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(out) if out else None,
        help="output folder"
        + (" (default: %(default)s)" if out else " (default: the recipe's out, or beside the checkpoint / runs/train)"),
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_config_arguments(
    parser: argparse.ArgumentParser,
    config_class,
    choices: dict | None = None,
    grouped: bool = True,
    names: tuple[str, ...] | None = None,
    defaults=None,
) -> None:
    """One flag per field of a settings dataclass (RunConfig, StudyConfig), with its help and default; a flag
    not given stays absent from the namespace, so a recipe's value or the default applies. names: only these
    fields; defaults: an instance whose values are the defaults shown (e.g. a study's RunConfig)."""
    choices = choices or {}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(config_class):
        group = f.metadata.get("group", "")
        if group == "facts" or f.name == "run" or (names is not None and f.name not in names):
            continue
        if group not in groups:
            groups[group] = parser.add_argument_group(group) if grouped and group else parser
        flag = "--" + f.name.replace("_", "-")
        default = f.default if defaults is None else getattr(defaults, f.name)
        text = f.metadata["help"].replace("%", "%%")
        if f.name == "method":
            text = f"{text}: {methods_help()}"
        kwargs: dict = {"default": argparse.SUPPRESS, "dest": f.name}
        if f.type == "bool":
            groups[group].add_argument(flag, action="store_true", help=text, **kwargs)
            continue
        kind = {"int": int, "float": float, "float | None": float, "tuple[int, ...]": int}.get(f.type, str)
        if f.type.startswith("tuple"):
            kwargs["nargs"] = "*"
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        groups[group].add_argument(
            flag,
            type=kind,
            choices=f.metadata.get("choices") or choices.get(f.name),
            metavar=f.name.upper() if f.name in choices else None,
            help=text if default is None else f"{text} (default: {shown})",
            **kwargs,
        )


def add_study_arguments(parser: argparse.ArgumentParser, defaults: StudyConfig, own: tuple[str, ...]) -> None:
    """A study's flags: the RunConfig fields it reads (RUN_FIELDS) and its own fields `own`, with the
    defaults of `defaults` (compare's and run's differ: a study over seeds, one quick seed)."""
    add_config_arguments(parser, RunConfig, {"dataset": DATASETS}, False, RUN_FIELDS, defaults.run)
    add_config_arguments(parser, StudyConfig, grouped=False, names=own, defaults=defaults)


def study_config(args: argparse.Namespace, defaults: StudyConfig = StudyConfig()) -> StudyConfig:
    """The StudyConfig of a command line over `defaults`: the recipe's values, then the flags given. --seeds
    are the seeds themselves (--seeds 3 is seed 3); --num-seeds N (recipe: num_seeds) is seeds 0..N-1.
    --methods, --variants, --variant-methods, --method-lr and --contrasts also take comma-separated lists."""
    recipe = getattr(args, "recipe", None)
    fields = {*RUN_FIELDS, *(f.name for f in dataclasses.fields(StudyConfig))} - {"run"}
    values = read_recipe(recipe) if recipe is not None else {}
    values.update({k: v for k, v in vars(args).items() if k in fields})
    for key in ("methods", "variants", "variant_methods", "method_lr", "contrasts"):
        if key in values:
            items = [values[key]] if isinstance(values[key], str) else values[key]
            values[key] = tuple(part for item in items for part in _split(str(item)) if part)
    from_recipe, given = values.pop("num_seeds", None), "seeds" in vars(args)
    count_flag = getattr(args, "num_seeds", None)
    if (count_flag is not None and given) or (from_recipe is not None and "seeds" in values and not given):
        raise ValueError("give seeds (the seeds themselves) or num_seeds (seeds 0..N-1), not both")
    count = count_flag if count_flag is not None else from_recipe if not given else None
    if count is not None:  # --num-seeds, else the recipe's num_seeds unless --seeds overrides it
        values["seeds"] = tuple(range(positive_int(count, "num_seeds")))
    own = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(StudyConfig) if f.name != "run"}
    source = f"recipe {recipe}" if recipe is not None else "command line"
    return StudyConfig.from_dict({**own, **values}, source=source, defaults=defaults.run)


def _split(text: str) -> list[str]:
    """Comma-separated items, commas inside brackets kept ('na[scale_grad=numel,scale_decay=true],qcfs')."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [*items, current]


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (the safe loader keeps the later)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is written twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_recipe(recipe: Path) -> dict:
    if not recipe.is_file():
        raise ValueError(f"recipe {recipe} not found")
    try:
        values = yaml.load(recipe.read_text(), Loader=_UniqueKeys) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ValueError(f"recipe {recipe} is not valid YAML{at}: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"recipe {recipe}: expected a mapping of settings (key: value lines)")
    return values


def check_positive(args: argparse.Namespace, *flags: str, allow_zero: tuple[str, ...] = ()) -> None:
    for flag in flags:
        positive_int(getattr(args, flag), f"--{flag.replace('_', '-')}", zero=flag in allow_zero)


def output_folder(path: Path) -> Path:
    """`path` as an output folder: a ValueError, before any work, when it names an existing file."""
    check_writable(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file; give a folder (it is created if missing)")
    return path


def show_progress(args: argparse.Namespace) -> Progress:
    """Bars on a terminal, lines now and then where stderr is a file or a pipe, nothing with --no-progress."""
    return False if args.no_progress else True if sys.stderr.isatty() else "lines"


def write_results(
    out: Path, config: dict, rows: dict, start: float, title: str, extra: dict | None = None, name: str = "results"
) -> None:
    json_path, png_path = out / f"{name}.json", out / "accuracy_vs_T.png"
    write_json(
        {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in config.items()},
            **(extra or {}),
            "torch": torch.__version__,
            "seconds": round(time.time() - start, 1),
            "results": rows,
        },
        json_path,
    )
    curves = {m: r for m, r in rows.items() if "snn_accuracy" in r}
    if curves:
        plot_accuracy(curves, png_path, title=title)
    print(f"\nwrote {json_path}" + (f" and {png_path}" if curves else "") + f" ({time.time() - start:.0f} s)")
