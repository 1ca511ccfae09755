"""Command line. ``run`` does the whole job on the embedded data set; ``train`` and ``evaluate`` run the
paper's recipes on real data (one YAML per table row in recipes/, any flag overrides it)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from .checkpoint import export_weights, load_checkpoint, restore
from .checks import positive_int
from .compare import StudyConfig
from .data import DATASETS, DeviceLoader, get_dataset
from .distributed import init_from_env, is_main
from .events import EVENT_DATASETS, event_dataset
from .experiment import NA_COMPARISON, compare_methods
from .export import add_export_arguments, export_main
from .files import write_json
from .methods import list_methods, methods_help
from .models import create_model, list_models
from .report import accuracy_table, plot_accuracy
from .runconfig import RunConfig, check_method_fields, checkpoint_run, deprecated_noise_p, load_run
from .simulation import simulate, time_steps
from .train import evaluate, fit

DESCRIPTION = """\
Build low-latency spiking neural networks (SNNs) from ordinary deep networks with Noise Adaptor:
train an activation-quantized ANN whose ReLU is s*round(clip(v/s + noise, 0, p)), convert it to
integrate-and-fire neurons (threshold p*s), and measure SNN accuracy at every time step T."""

RUN_EPILOG = """\
what it does:
  1. trains a float network (default: CIFAR-style ResNet-20) on the data set
     (no download: 'digits' ships with scikit-learn)
  2. for each method: prepare (ReLU -> quantizer, max-pool -> avg-pool), initialise the scales
     layer by layer, quantization-aware training from the float weights
       na        Noise Adaptor: uniform noise U(-0.5, 0.5) added before rounding in training
       no-noise  the same quantizer without noise (the paper's "w/o NA" baseline)
       qcfs      QCFS clip-floor-shift activation with a learned threshold (Bu et al. 2022)
  3. converts each to an SNN and simulates T = 1..--T steps in one run
  4. prints ANN and SNN accuracy per T; writes results.json and accuracy_vs_T.png to --out

example:
  noiseadaptor run                          # defaults, about a minute on 2 CPU cores
  noiseadaptor run --p 3 --methods na,no-noise --T 64 --out runs/p3
"""

COMPARE_DESCRIPTION = """\
Does a method beat its baseline, by how much, at which T? A paired study over seeds: one float network
(trained once), then for every seed each method by QAT from it with the same data order, calibration
batch and seed; each converted and simulated at every T = 1..--T on the same test images. Run-time
variants (negative spikes, COS offset spikes, Phase II) are extra rows of the same trained networks.
Every finished cell is saved: a killed study continues with the same command; --report re-prints."""

COMPARE_EPILOG = """\
output (--out): cells/<method>-seed<seed>.json (one per trained network), compare.json (the statistics:
per row and T the per-seed accuracies, mean and 95% t-interval; per row the paired difference to
--baseline with its 95% t-interval and paired t-test p-value; ANN-SNN agreement; per-layer conversion
error; COS rows count T both ways), compare.png (accuracy, difference and layer error vs T with bands).

examples:
  noiseadaptor compare --dataset digits --model small-cnn --seeds 4 --epochs 5 --float-epochs 10 --T 16
  noiseadaptor compare --dataset cifar10 --data-dir DIR --seeds 8 --variants negative,cos4 --out runs/c10
"""

TRAIN_EPILOG = """\
examples:
  noiseadaptor train --recipe recipes/cifar10-resnet18-float.yaml
  noiseadaptor train --recipe recipes/table1-cifar10-resnet18-na.yaml --epochs 50
  noiseadaptor train --dataset imagenet --data-dir /data/imagenet --model resnet34 --weights DEFAULT \\
      --method na --p 3 --weight-decay 2.5e-5 --out runs/r34-na
  torchrun --nproc-per-node 8 -m noiseadaptor.cli train --recipe recipes/table2-imagenet-resnet50-na.yaml

A killed run continues with the same command plus --resume (at most one epoch is lost). Writes
--out/checkpoint.pt (+ .json), log.csv, model.safetensors and results.json.
"""


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser and its sub-command parsers by name."""
    parser = argparse.ArgumentParser(
        prog="noiseadaptor", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    run = commands.add_parser(
        "run",
        help="train, quantize, convert and simulate on the embedded data set",
        description=DESCRIPTION,
        epilog=RUN_EPILOG,
        formatter_class=fmt,
    )
    run.add_argument("--dataset", default="digits", choices=DATASETS, help="data set (default: %(default)s)")
    run.add_argument("--data-dir", type=Path, help="data folder for a data set other than digits")
    _model_args(run, default="cifar-resnet20")
    run.add_argument(
        "--methods",
        default=",".join(NA_COMPARISON),
        help="comma-separated quantization methods to compare (default: %(default)s)",
    )
    run.add_argument(
        "--p", type=int, default=2, help="quantization upper bound p; SNN threshold = p*s (default: %(default)s)"
    )
    run.add_argument("--float-epochs", type=int, default=30, help="float pre-training epochs (default: %(default)s)")
    _optim_args(run, epochs=30, lr=0.05, weight_decay=5e-4, batch_size=64)
    _simulation_args(run)
    _common_args(run, out="noiseadaptor-run")

    train = commands.add_parser(
        "train",
        help="float pre-training or quantization-aware training on real data",
        description="Train a float network (--method float), a quantized one from float "
        "weights (--init or --weights), or an SNN directly, with checkpoints and resume. "
        "The flags are the fields of noiseadaptor.runconfig.RunConfig; a recipe is a YAML "
        "file of them.",
        epilog=TRAIN_EPILOG,
        formatter_class=fmt,
    )
    train.add_argument(
        "--recipe",
        type=Path,
        help="YAML file of run settings (keys: the long flags with _ for -, "
        "and out); flags given on the command line win",
    )
    add_run_arguments(train)
    train.add_argument("--noise-p", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # deprecated
    train.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    _common_args(train, out=None, seed=False)

    ev = commands.add_parser(
        "evaluate",
        help="ANN accuracy of a checkpoint and, if quantized, SNN accuracy per T",
        description="Rebuild the model of a train checkpoint, measure its ANN accuracy, "
        "convert it and simulate T = 1..--T.",
        formatter_class=fmt,
    )
    ev.add_argument("checkpoint", type=Path, help="a checkpoint.pt written by train")
    ev.add_argument("--data-dir", type=Path, help="override the data folder recorded in the checkpoint")
    ev.add_argument("--batch-size", type=int, default=256, help="(default: %(default)s)")
    ev.add_argument("--workers", type=int, default=0, help="data loader processes (default: %(default)s)")
    _simulation_args(ev)
    phase2 = ev.add_argument_group(
        "dual-phase Phase II: calibrate the SNN against its quantized ANN before "
        "simulating, layer by layer, on unlabelled training images"
    )
    phase2.add_argument(
        "--calibrate",
        default="none",
        choices=("none", "coarse", "fine", "both"),
        help="coarse: initial membrane in closed form (Eq. 16); fine: weights and initial "
        "membrane by BPTT (Eq. 17-19); both: coarse then fine (default: %(default)s)",
    )
    phase2.add_argument("--calibration-samples", type=int, default=256, help="(default: %(default)s)")
    phase2.add_argument(
        "--calibration-T",
        type=int,
        default=None,
        help="the T the calibration optimises for (default: --T; the paper calibrates at the "
        "T it reports, the p of a dual-phase checkpoint)",
    )
    phase2.add_argument(
        "--calibration-epochs",
        type=int,
        default=30,
        help="fine calibration passes over the samples per layer (default: %(default)s)",
    )
    phase2.add_argument(
        "--final-coarse",
        action="store_true",
        help="one more coarse pass over every layer at the end (the authors' script: coarse, fine, coarse)",
    )
    _common_args(ev, out=None)

    cmp = commands.add_parser(
        "compare",
        help="paired multi-seed study of conversion methods, with 95% intervals",
        description=COMPARE_DESCRIPTION,
        epilog=COMPARE_EPILOG,
        formatter_class=fmt,
    )
    cmp.add_argument("--recipe", type=Path, help="YAML file of study settings (keys: the flags with _ for -)")
    add_config_arguments(cmp, StudyConfig, {"dataset": DATASETS}, grouped=False)
    cmp.add_argument("--out", type=Path, default=Path("runs/compare"), help="study folder (default: %(default)s)")
    cmp.add_argument("--report", action="store_true", help="only print the tables and plot from --out's cells")
    cmp.add_argument("--no-progress", action="store_true", help="hide progress bars")

    ex = commands.add_parser(
        "export",
        help="write a quantized checkpoint as NIR (the SNN) or ONNX (the ANN)",
        description="Rebuild a quantized train checkpoint, convert it and write the SNN "
        "as a NIR graph (pip install noiseadaptor[nir]), or the quantized ANN as ONNX. "
        "Read the semantics note in the README before running the file elsewhere.",
        formatter_class=fmt,
    )
    add_export_arguments(ex)

    return parser, {"run": run, "train": train, "evaluate": ev, "compare": cmp, "export": ex}


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "train":
            args.run = run_config(args)
        commands = {"run": _run, "train": _train, "evaluate": _evaluate, "compare": _compare, "export": export_main}
        return commands[args.command](args)
    except ValueError as err:  # bad input found by the library, before any heavy work
        parser.exit(2, f"noiseadaptor {args.command}: error: {_one_line(err)}\n")


def _one_line(err: Exception) -> str:
    """The message of `err`; for one raised in a DataLoader worker (which torch re-raises with the worker's
    whole traceback), the original message alone."""
    message = str(err)
    if message.startswith("Caught ") and "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return message


def _model_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--model", default=default, help=f"one of {', '.join(list_models())} (default: %(default)s)")


def _optim_args(p: argparse.ArgumentParser, epochs: int, lr: float, weight_decay: float, batch_size: int) -> None:
    p.add_argument("--epochs", type=int, default=epochs, help="training epochs (default: %(default)s)")
    p.add_argument("--lr", type=float, default=lr, help="SGD learning rate, cosine schedule (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=weight_decay, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=batch_size, help="per process (default: %(default)s)")


def _simulation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--T", type=int, default=256, help="simulate T = 1..this many steps (default: %(default)s)")
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
    p.add_argument("--no-synops", action="store_true", help="skip counting synaptic operations and energy")


def _simulate_options(args: argparse.Namespace) -> dict:
    positive_int(args.offset_spikes, "--offset-spikes", zero=True)
    return {"negative_spikes": args.negative_spikes, "offset_spikes": args.offset_spikes, "synops": not args.no_synops}


def _print_tables(rows: dict, title: str) -> None:
    from .report import energy_table

    print(title)
    print(accuracy_table(rows))
    energy = energy_table(rows)
    if energy:
        print("\nEnergy per image, E_SNN / E_ANN (Horowitz 45 nm: 4.6 pJ/MAC, 0.9 pJ/SOP)")
        print(energy)
    corrections = next((r["corrections"] for r in rows.values() if "corrections" in r), {})
    if corrections.get("offset_spikes_pre_steps"):
        print(
            f"\noffset spikes: {corrections['offset_spikes_pre_steps']} pre-simulation steps per image, "
            "not counted in T (nor in the energy above)"
        )


def _common_args(p: argparse.ArgumentParser, out: str | None, seed: bool = True) -> None:
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
    parser: argparse.ArgumentParser, config_class, choices: dict | None = None, grouped: bool = True
) -> None:
    """One flag per field of a settings dataclass (RunConfig, StudyConfig), with its help and default; a flag
    not given stays absent from the namespace, so a recipe's value or the field's default applies."""
    choices = choices or {}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(config_class):
        group = f.metadata.get("group", "")
        if group == "facts":
            continue
        if group not in groups:
            groups[group] = parser.add_argument_group(group) if grouped and group else parser
        flag, default = "--" + f.name.replace("_", "-"), f.default
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


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, RunConfig, {"dataset": DATASETS + EVENT_DATASETS, "method": tuple(list_methods())})


def run_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of a train command line: the recipe's values, then the flags given, validated (settings
    of another method refused, the deprecated --noise-p mapped to its method's probability). Also settles
    the invocation: --out (flag, else the recipe's out, else runs/train) and --resume (flag or recipe)."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    values = read_recipe(args.recipe) if args.recipe is not None else {}
    recipe_out, recipe_resume = values.pop("out", None), values.pop("resume", False)
    if not isinstance(recipe_resume, bool):
        raise ValueError(f"recipe {args.recipe}: resume must be true or false, got {recipe_resume!r}")
    args.out = args.out or Path(recipe_out or "runs/train")
    args.resume = args.resume or recipe_resume
    values.update({k: v for k, v in vars(args).items() if k in fields})
    noise = getattr(args, "noise_p", values.pop("noise_p", None))
    if noise is not None:
        alias = deprecated_noise_p(values.get("method", RunConfig.method), noise)
        if set(alias) & set(values):
            raise ValueError(f"give {next(iter(alias))} or the deprecated noise_p, not both")
        values.update(alias)
    check_method_fields(values.get("method", RunConfig.method), set(values))
    return RunConfig.from_dict(values, source=f"recipe {args.recipe}" if args.recipe else "command line")


def read_recipe(recipe: Path) -> dict:
    import yaml

    if not recipe.is_file():
        raise ValueError(f"recipe {recipe} not found")
    values = yaml.safe_load(recipe.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"recipe {recipe}: expected a mapping of settings (key: value lines)")
    return values


def _check_positive(args: argparse.Namespace, *flags: str, allow_zero: tuple[str, ...] = ()) -> None:
    for flag in flags:
        positive_int(getattr(args, flag), f"--{flag.replace('_', '-')}", zero=flag in allow_zero)


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _run(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    convertible = list_methods("conversion")
    unknown = [m for m in methods if m not in convertible]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown {unknown or 'empty list'}; choose from {', '.join(convertible)}")
    _check_positive(args, "p", "T", "batch_size", "float_epochs", "epochs", allow_zero=("float_epochs", "epochs"))
    _simulate_options(args)
    device = init_from_env(args.device)
    progress, start = _progress(args), time.time()

    torch.manual_seed(args.seed)
    splits = get_dataset(args.dataset, args.data_dir)
    train_data, test_data = splits.loaders(args.batch_size, eval_batch_size=512, seed=args.seed)
    model = create_model(args.model, num_classes=splits.num_classes, in_channels=splits.in_channels).to(device)
    print(
        f"[float] training {args.model} on {args.dataset} ({len(splits.train)} train / {len(splits.test)} "
        f"test images), {args.float_epochs} epochs, device {device}"
    )
    fit(
        model,
        train_data,
        args.float_epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        device=device,
        progress=progress,
        desc="float",
    )
    rows = {"float": {"ann_accuracy": evaluate(model, test_data, device)}}
    print(f"[float] ANN {100 * rows['float']['ann_accuracy']:.2f}%")

    method_rows, _ = compare_methods(
        model,
        train_data,
        test_data,
        methods,
        p=args.p,
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        T=time_steps(args.T),
        seed=args.seed,
        device=device,
        progress=progress,
        simulate_options=_simulate_options(args),
    )
    rows.update(method_rows)
    print()
    _print_tables(rows, f"Top-1 accuracy (%) on {args.dataset} test, {args.model}, p={args.p}, seed {args.seed}")
    _write_results(args, rows, device, start, title=f"{args.model} on {args.dataset}, p={args.p}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .calibrate import init_scales
    from .preparation import requantize

    run: RunConfig = args.run
    method = run.method_info
    optimizer = method.optimizer(run)
    if run.init is not None and not Path(run.init).is_file():
        raise ValueError(f"--init {run.init}: no such checkpoint")
    init_state = load_checkpoint(run.init) if run.init is not None else None
    start = checkpoint_run(init_state["config"], f"--init {run.init}") if init_state is not None else None
    quantized_start = start is not None and start.method_info.family == "conversion"  # e.g. a clip source ANN
    if quantized_start and method.family != "conversion":
        raise ValueError(
            f"--init {run.init} is a quantized ({start.method}) network: continue it with a "
            f"quantization method ({', '.join(list_methods('conversion'))}), or start {run.method} "
            "from a float one"
        )
    checkpoint = args.out / "checkpoint.pt"
    if checkpoint.exists() and not args.resume:
        raise ValueError(f"{checkpoint} exists: add --resume to continue it, or choose another --out")
    events = run.dataset in EVENT_DATASETS
    if events and method.family != "direct":
        raise ValueError(
            f"{run.dataset} is event data (frames over T steps): train it with a direct method "
            f"({', '.join(list_methods('direct'))})"
        )
    if run.data_on_device and (
        run.dataset not in ("cifar10", "cifar100", "mnist", "fashion-mnist") or run.augment != "standard" or run.cutout
    ):
        raise ValueError(
            "--data-on-device holds CIFAR-10/100 or (Fashion-)MNIST on the device with the standard "
            "augmentation; drop it for other data sets, --augment or --cutout"
        )
    device = init_from_env(args.device)
    torch.manual_seed(run.seed)
    splits = (
        event_dataset(run.dataset, run.data_dir, run.time_steps, run.download)
        if events
        else get_dataset(run.dataset, run.data_dir, run.download, run.augment, run.cutout)
    )
    if run.data_on_device:
        train_data, test_data = (
            DeviceLoader.from_dataset(d, run.batch_size, run.dataset, device, train=t, seed=run.seed)
            for d, t in ((splits.train, True), (splits.test, False))
        )
    else:
        train_data, test_data = splits.loaders(run.batch_size, seed=run.seed, num_workers=run.workers)
    run = dataclasses.replace(
        run,
        num_classes=splits.num_classes,
        in_channels=splits.in_channels,
        image_size=splits.image_size,
        event_input=events,
    )
    extra = {"weights": run.weights} if run.weights else {}
    model = create_model(run.model, splits.num_classes, splits.in_channels, **extra)
    if quantized_start:
        model = start.method_info.build(model, start)
    if init_state is not None:
        restore(init_state, model, rng=False)
    if quantized_start:  # keep the thresholds it learned, now with this method's quantizer
        model = requantize(model, method.quant(run)).to(device)
    else:
        model = method.build(model, run).to(device)
        if method.family == "conversion" and not checkpoint.exists():  # a resumed run loads its trained scales
            init_scales(model, next(iter(train_data)))
    trained = torch.compile(model) if run.compile else model
    if is_main():
        detail = {"conversion": f", p={run.p}", "direct": f", T={run.time_steps}"}.get(method.family, "")
        print(
            f"[train] {run.model} on {run.dataset}, method {run.method}{detail}, {run.epochs} epochs, device {device}"
        )
    history = fit(
        trained,
        train_data,
        run.epochs,
        optimizer=optimizer,
        val_data=test_data,
        val_name="test_acc",
        device=device,
        progress=_progress(args),
        desc=run.method,
        checkpoint=checkpoint,
        resume=args.resume,
        config=run.to_dict(),
        amp=run.amp,
        log_dir=args.out,
        log_epochs=not args.no_progress and not sys.stderr.isatty(),
        on_epoch_start=model.start_epoch if method.family == "direct" else None,
    )
    accuracy = evaluate(model, test_data, device)
    if is_main():
        config = run.to_dict()
        export_weights(model, args.out / "model.safetensors", config)
        write_json({"config": config, "ann_accuracy": accuracy, "history": history}, args.out / "results.json")
        print(f"[train] test accuracy {100 * accuracy:.2f}%; wrote {checkpoint} and {args.out / 'model.safetensors'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .conversion import convert

    _check_positive(
        args, "T", "batch_size", "calibration_samples", "calibration_epochs", allow_zero=("calibration_epochs",)
    )
    if args.calibration_T is not None:
        _check_positive(args, "calibration_T")
    _simulate_options(args)
    loaded = load_run(args.checkpoint)
    run, model = loaded.config, loaded.model
    device = init_from_env(args.device)
    data_dir = args.data_dir or run.data_dir
    splits = (
        event_dataset(run.dataset, data_dir, run.time_steps) if run.event_input else get_dataset(run.dataset, data_dir)
    )
    train_data, test_data = splits.loaders(args.batch_size, seed=args.seed, num_workers=args.workers)
    quantized = run.method_info.family == "conversion"  # converted and simulated; others evaluated as trained
    start = time.time()
    name = run.method
    if args.calibrate != "none" and not quantized:
        raise ValueError(
            f"--calibrate needs a quantized checkpoint ({', '.join(list_methods('conversion'))}); this one is {name}"
        )
    rows = {name: {"ann_accuracy": evaluate(model.to(device), test_data, device)}}
    if quantized:
        snn = convert(model)
        if args.calibrate != "none":
            rows[name]["calibration"] = _phase2(args, snn, model, train_data)
        result = simulate(snn, test_data, T=args.T, device=device, progress=_progress(args), **_simulate_options(args))
        rows[name].update(result.row())
    args.out = args.out or args.checkpoint.parent
    if is_main():
        _print_tables(
            rows, f"Top-1 accuracy (%) on {run.dataset} test, {run.model}" + (f", p={run.p}" if quantized else "")
        )
        _write_results(
            args,
            rows,
            device,
            start,
            title=f"{run.model} on {run.dataset}",
            extra={"checkpoint": str(args.checkpoint), "checkpoint_config": run.to_dict()},
            name="evaluation",
        )
    return 0


def study_config(args: argparse.Namespace) -> StudyConfig:
    """The StudyConfig of a compare command line: recipe, then flags. --seeds N (one number) means seeds 0..N-1;
    several numbers are the seeds themselves. --methods and --variants also take comma-separated lists."""
    fields = {f.name for f in dataclasses.fields(StudyConfig)}
    values = read_recipe(args.recipe) if args.recipe is not None else {}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"recipe {args.recipe}: unknown keys {unknown}; the keys are compare's flags")
    values.update({k: v for k, v in vars(args).items() if k in fields})
    for key in ("methods", "variants", "variant_methods"):
        if key in values:
            items = [values[key]] if isinstance(values[key], str) else values[key]
            values[key] = tuple(part for item in items for part in str(item).split(",") if part)
    if "seeds" in values:  # a count (--seeds N, or a number in a recipe), or the seeds (several, or a recipe list)
        seeds = values["seeds"]
        from_flag = "seeds" in vars(args)
        if isinstance(seeds, int) or (from_flag and len(seeds) == 1):
            count = seeds if isinstance(seeds, int) else seeds[0]
            values["seeds"] = tuple(range(count))
        elif not seeds:
            raise ValueError("--seeds needs a number of seeds (0..N-1) or the seeds themselves")
        else:
            values["seeds"] = tuple(seeds)
    return StudyConfig(**values)


def _compare(args: argparse.Namespace) -> int:
    from .compare import load_cells, plot_study, report_table, run_study, summarize

    if args.report:
        saved = args.out / "study.json"
        if not saved.exists():
            raise ValueError(f"{args.out} holds no study (no study.json): run compare without --report first")
        config = StudyConfig(**json.loads(saved.read_text()))
        summary = summarize(config, load_cells(args.out))
        write_json(summary, args.out / "compare.json")
    else:
        config = study_config(args)
        summary = run_study(config, args.out, progress=_progress(args))
    print(report_table(summary))
    if summary["rows"]:
        plot_study(summary, args.out / "compare.png")
    print(f"\nwrote {args.out / 'compare.json'}" + (f" and {args.out / 'compare.png'}" if summary["rows"] else ""))
    return 0


def _phase2(args: argparse.Namespace, snn, qmodel, train_data) -> dict:
    from .dual_phase import dual_phase_calibrate

    T = args.calibration_T or args.T
    print(f"[phase II] {args.calibrate} calibration at T={T} on {args.calibration_samples} training images")
    report = dual_phase_calibrate(
        snn,
        qmodel,
        train_data,
        T=T,
        coarse=args.calibrate in ("coarse", "both"),
        fine=args.calibrate in ("fine", "both"),
        num_samples=args.calibration_samples,
        epochs=args.calibration_epochs,
        seed=args.seed,
        final_coarse=args.final_coarse,
    )
    for layer, r in report.get("fine", {}).items():
        print(f"  {layer}: held-out KL {r['loss_before']:.3g} -> {r['loss_after']:.3g}")
    return {"T": T, "mode": args.calibrate, "samples": args.calibration_samples, **report}


def _write_results(
    args, rows: dict, device, start: float, title: str, extra: dict | None = None, name: str = "results"
) -> None:
    json_path, png_path = args.out / f"{name}.json", args.out / "accuracy_vs_T.png"
    write_json(
        {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            **(extra or {}),
            "device": str(device),
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


if __name__ == "__main__":
    sys.exit(main())
