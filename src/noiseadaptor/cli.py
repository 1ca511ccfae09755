"""Command line. ``run`` does the whole job on the embedded data set; ``train`` and ``evaluate`` run the
paper's recipes on real data (one YAML per table row in recipes/, any flag overrides it)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from .checkpoint import export_weights, load_checkpoint, restore
from .data import DATASETS, DeviceLoader, default_data_dir, get_dataset
from .events import EVENT_DATASETS, event_dataset
from .export import add_export_arguments, export_main
from .distributed import init_from_env, is_main
from .experiment import DIRECT_METHODS, METHODS, NA_COMPARISON, build_for_method, compare_methods, quant_config
from .models import create_model, list_models
from .report import accuracy_table, plot_accuracy, write_json
from .simulation import simulate, time_steps
from .train import OptimizerConfig, evaluate, fit

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
    parser = argparse.ArgumentParser(prog="noiseadaptor", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    run = commands.add_parser("run", help="train, quantize, convert and simulate on the embedded data set",
                              description=DESCRIPTION, epilog=RUN_EPILOG, formatter_class=fmt)
    run.add_argument("--dataset", default="digits", choices=DATASETS, help="data set (default: %(default)s)")
    _model_args(run, default="cifar-resnet20")
    run.add_argument("--methods", default=",".join(NA_COMPARISON),
                     help="comma-separated quantization methods to compare (default: %(default)s)")
    run.add_argument("--p", type=int, default=2, help="quantization upper bound p; SNN threshold = p*s "
                     "(default: %(default)s)")
    run.add_argument("--float-epochs", type=int, default=30, help="float pre-training epochs (default: %(default)s)")
    _optim_args(run, epochs=30, lr=0.05, weight_decay=5e-4, batch_size=64)
    _simulation_args(run)
    _common_args(run, out="noiseadaptor-run")

    train = commands.add_parser("train", help="float pre-training or quantization-aware training on real data",
                                description="Train a float network (--method float) or a quantized one "
                                "from float weights (--init or --weights), with checkpoints and resume.",
                                epilog=TRAIN_EPILOG, formatter_class=fmt)
    train.add_argument("--recipe", type=Path, help="YAML file of flag values (keys as the long flags, "
                       "with _ for -); flags given on the command line win")
    _data_args(train)
    _model_args(train, default="cifar-resnet18")
    train.add_argument("--weights", help="torchvision pre-trained weights for torchvision models "
                       "(DEFAULT, IMAGENET1K_V1, ...)")
    train.add_argument("--init", type=Path, help="start from this checkpoint: a float one (train --method float), "
                       "or a quantized one whose thresholds are kept (e.g. dual-phase from its clip source ANN)")
    train.add_argument("--method", default="na", choices=("float", *METHODS, *DIRECT_METHODS),
                       help="float; a quantizer for conversion: na, no-noise, qcfs, clip (dual-phase's source "
                            "ANN, clip(x, 0, theta)), dual-phase (Phase I: QC-ANN with Bernoulli Quant-Noise, p = "
                            "its T); or direct SNN training: asgl, sg (default: %(default)s)")
    train.add_argument("--p", type=int, default=2, help="quantization upper bound (default: %(default)s)")
    train.add_argument("--noise-p", type=float, default=None,
                       help="noise probability: ASGL's spike-noise mask (default 0.5), dual-phase's Quant-Noise "
                            "pass-through (default 0.1)")
    direct = train.add_argument_group("direct training (--method asgl or sg)")
    direct.add_argument("--time-steps", type=int, default=4, help="T of the trained SNN (default: %(default)s)")
    direct.add_argument("--tau", type=float, default=2.0, help="LIF time constant, leak 1-1/tau (default: %(default)s)")
    direct.add_argument("--alpha", type=float, default=1.0,
                        help="initial surrogate width a: the surrogate's slope at 0 is 1/a for every shape (the "
                             "rectangle's width, ASGL Tables 4/11; default: %(default)s)")
    direct.add_argument("--steepness", type=float, default=None,
                        help="instead of --alpha, for --surrogate sigmoid: the paper's 1/2 tanh(steepness x) + 1/2 "
                             "(ASGL Table 5 / A.6 alpha, e.g. 2.5); the width becomes 2/steepness")
    direct.add_argument("--threshold", type=float, default=1.0, help="LIF firing threshold (default: %(default)s)")
    direct.add_argument("--reset", default="hard", choices=("hard", "soft"), help="(default: %(default)s)")
    direct.add_argument("--surrogate", default="rectangular", choices=("rectangular", "sigmoid"),
                        help="(default: %(default)s)")
    direct.add_argument("--noise-decay", type=float, default=1.0, metavar="ZETA",
                        help="ASGL's schedule: at each --noise-milestones epoch, noise-p <- 1 - (1 - noise-p) * ZETA "
                             "(paper Table 6: CIFAR-100 0.8; default %(default)s keeps it fixed)")
    direct.add_argument("--noise-milestones", type=int, nargs="+", default=[], metavar="EPOCH",
                        help="0-based epochs where the noise decay applies (CIFAR-100, 300 epochs: 90 210 270 285)")
    _optim_args(train, epochs=400, lr=0.05, weight_decay=5e-4, batch_size=128)
    train.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"),
                       help="main optimiser, cosine schedule; SGD has momentum 0.9 (default: %(default)s). Weight "
                            "decay: every parameter but surrogate widths; for asgl/sg, as the ASGL authors, "
                            "conv/linear weights only")
    direct.add_argument("--width-lr", type=float, default=3e-4,
                        help="asgl: the surrogate widths' own Adam learning rate, constant, no weight decay "
                             "(the authors' code; default: %(default)s)")
    train.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    _common_args(train, out="runs/train")

    ev = commands.add_parser("evaluate", help="ANN accuracy of a checkpoint and, if quantized, SNN accuracy per T",
                             description="Rebuild the model of a train checkpoint, measure its ANN accuracy, "
                             "convert it and simulate T = 1..--T.", formatter_class=fmt)
    ev.add_argument("checkpoint", type=Path, help="a checkpoint.pt written by train")
    ev.add_argument("--data-dir", type=Path, help="override the data folder recorded in the checkpoint")
    ev.add_argument("--batch-size", type=int, default=256, help="(default: %(default)s)")
    ev.add_argument("--workers", type=int, default=0, help="data loader processes (default: %(default)s)")
    _simulation_args(ev)
    phase2 = ev.add_argument_group("dual-phase Phase II: calibrate the SNN against its quantized ANN before "
                                   "simulating, layer by layer, on unlabelled training images")
    phase2.add_argument("--calibrate", default="none", choices=("none", "coarse", "fine", "both"),
                        help="coarse: initial membrane in closed form (Eq. 16); fine: weights and initial "
                             "membrane by BPTT (Eq. 17-19); both: coarse then fine (default: %(default)s)")
    phase2.add_argument("--calibration-samples", type=int, default=256, help="(default: %(default)s)")
    phase2.add_argument("--calibration-T", type=int, default=None,
                        help="the T the calibration optimises for (default: --T; the paper calibrates at the "
                             "T it reports, the p of a dual-phase checkpoint)")
    phase2.add_argument("--calibration-epochs", type=int, default=30,
                        help="fine calibration passes over the samples per layer (default: %(default)s)")
    phase2.add_argument("--final-coarse", action="store_true",
                        help="one more coarse pass over every layer at the end (the authors' script: coarse, "
                             "fine, coarse)")
    _common_args(ev, out=None)

    ex = commands.add_parser("export", help="write a quantized checkpoint as NIR (the SNN) or ONNX (the ANN)",
                             description="Rebuild a quantized train checkpoint, convert it and write the SNN "
                             "as a NIR graph (pip install noiseadaptor[nir]), or the quantized ANN as ONNX. "
                             "Read the semantics note in the README before running the file elsewhere.",
                             formatter_class=fmt)
    add_export_arguments(ex)

    return parser, {"run": run, "train": train, "evaluate": ev, "export": ex}


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "train" and args.recipe is not None:
            args = apply_recipe(commands["train"], args.recipe, argv[1:])
            args.command = "train"
        return {"run": _run, "train": _train, "evaluate": _evaluate, "export": export_main}[args.command](args)
    except ValueError as err:  # bad input found by the library, before any heavy work
        parser.exit(2, f"noiseadaptor {args.command}: error: {err}\n")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="cifar10", choices=DATASETS + EVENT_DATASETS, help="(default: %(default)s)")
    p.add_argument("--data-dir", type=Path, help=f"data folder (default: $NOISEADAPTOR_DATA or {default_data_dir()})")
    p.add_argument("--download", action="store_true", help="let torchvision download the data set (needs internet)")
    p.add_argument("--augment", default="standard", choices=("standard", "autoaugment", "none"),
                   help="training augmentation for 32x32 data (default: %(default)s)")
    p.add_argument("--cutout", type=int, default=0, help="Cutout square side in pixels, 0 = off (default: 0)")
    p.add_argument("--data-on-device", action="store_true",
                   help="hold CIFAR/MNIST whole on the GPU and augment there (fast small-image training)")
    p.add_argument("--workers", type=int, default=4, help="data loader processes (default: %(default)s)")


def _model_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--model", default=default, help=f"one of {', '.join(list_models())} (default: %(default)s)")


def _optim_args(p: argparse.ArgumentParser, epochs: int, lr: float, weight_decay: float, batch_size: int) -> None:
    p.add_argument("--epochs", type=int, default=epochs, help="training epochs (default: %(default)s)")
    p.add_argument("--lr", type=float, default=lr, help="SGD learning rate, cosine schedule (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=weight_decay, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=batch_size, help="per process (default: %(default)s)")


def _simulation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--T", type=int, default=256, help="simulate T = 1..this many steps (default: %(default)s)")
    p.add_argument("--negative-spikes", action="store_true",
                   help="run-time correction: QFFS negative spikes (Li, Ma & Furber 2022)")
    p.add_argument("--offset-spikes", type=int, default=0, metavar="RHO",
                   help="run-time correction: COS two-stage offset spikes with RHO pre-simulation steps "
                        "(not counted in T, as in the COS paper); 0 = off (default)")
    p.add_argument("--no-synops", action="store_true", help="skip counting synaptic operations and energy")


def _simulate_options(args: argparse.Namespace) -> dict:
    if args.offset_spikes < 0:
        raise ValueError(f"--offset-spikes must be >= 0, got {args.offset_spikes}")
    return {"negative_spikes": args.negative_spikes, "offset_spikes": args.offset_spikes,
            "synops": not args.no_synops}


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
        print(f"\noffset spikes: {corrections['offset_spikes_pre_steps']} pre-simulation steps per image, "
              "not counted in T (nor in the energy above)")


def _common_args(p: argparse.ArgumentParser, out: str | None) -> None:
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--out", type=Path, default=Path(out) if out else None,
                   help="output folder" + (" (default: %(default)s)" if out else " (default: beside the checkpoint)"))
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def apply_recipe(parser: argparse.ArgumentParser, recipe: Path, argv: list[str]) -> argparse.Namespace:
    import yaml

    if not recipe.is_file():
        raise ValueError(f"recipe {recipe} not found")
    values = yaml.safe_load(recipe.read_text()) or {}
    known = {a.dest for a in parser._actions}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"recipe {recipe}: unknown keys {unknown}; keys are the train flags, e.g. "
                         f"{', '.join(sorted(known - {'help', 'recipe'})[:6])}, ...")
    for key in ("data_dir", "init", "out"):
        if values.get(key) is not None:
            values[key] = Path(values[key])
    parser.set_defaults(**values)
    return parser.parse_args(argv)


def _check_positive(args: argparse.Namespace, *flags: str, allow_zero: tuple[str, ...] = ()) -> None:
    for flag in flags:
        value = getattr(args, flag)
        if value < (0 if flag in allow_zero else 1):
            kind = "a non-negative" if flag in allow_zero else "a positive"
            raise ValueError(f"--{flag.replace('_', '-')} must be {kind} integer, got {value}")


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _run(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown {unknown or 'empty list'}; choose from {', '.join(METHODS)}")
    _check_positive(args, "p", "T", "batch_size", "float_epochs", "epochs", allow_zero=("float_epochs", "epochs"))
    _simulate_options(args)
    device = init_from_env(args.device)
    progress, start = _progress(args), time.time()

    torch.manual_seed(args.seed)
    splits = get_dataset(args.dataset)
    train_data, test_data = splits.loaders(args.batch_size, eval_batch_size=512, seed=args.seed)
    model = create_model(args.model, num_classes=splits.num_classes, in_channels=splits.in_channels).to(device)
    print(f"[float] training {args.model} on {args.dataset} ({len(splits.train)} train / {len(splits.test)} "
          f"test images), {args.float_epochs} epochs, device {device}")
    fit(model, train_data, args.float_epochs, lr=args.lr, weight_decay=args.weight_decay, device=device,
        progress=progress, desc="float")
    rows = {"float": {"ann_accuracy": evaluate(model, test_data, device)}}
    print(f"[float] ANN {100 * rows['float']['ann_accuracy']:.2f}%")

    method_rows, _ = compare_methods(model, train_data, test_data, methods, p=args.p, epochs=args.epochs,
                                     lr=args.lr, weight_decay=args.weight_decay, T=time_steps(args.T),
                                     seed=args.seed, device=device, progress=progress,
                                     simulate_options=_simulate_options(args))
    rows.update(method_rows)
    print()
    _print_tables(rows, f"Top-1 accuracy (%) on {args.dataset} test, {args.model}, p={args.p}, seed {args.seed}")
    _write_results(args, rows, device, start, title=f"{args.model} on {args.dataset}, p={args.p}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .calibrate import init_scales
    from .preparation import requantize

    _check_positive(args, "p", "batch_size", "epochs", "time_steps", allow_zero=("epochs",))
    preset = OptimizerConfig.asgl if args.method in DIRECT_METHODS else OptimizerConfig
    optimizer = preset(kind=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, width_lr=args.width_lr)
    if args.init is not None and args.weights is not None:
        raise ValueError("give --init (our float checkpoint) or --weights (torchvision's), not both")
    if args.noise_p is not None and args.method not in ("asgl", "dual-phase"):
        raise ValueError(f"--noise-p is the noise probability of asgl and dual-phase; method {args.method} has none")
    if (args.noise_decay != 1.0 or args.noise_milestones) and args.method != "asgl":
        raise ValueError("--noise-decay and --noise-milestones schedule ASGL's spike noise; use them with --method asgl")
    if (args.noise_decay != 1.0) != bool(args.noise_milestones):
        raise ValueError("ASGL's noise schedule needs both --noise-decay (zeta < 1) and --noise-milestones; "
                         "one alone changes nothing")
    if args.init is not None and not args.init.is_file():
        raise ValueError(f"--init {args.init}: no such checkpoint")
    init_state = load_checkpoint(args.init) if args.init is not None else None
    start_config = init_state["config"] if init_state is not None else {}
    quantized_start = start_config.get("method") in METHODS  # e.g. the dual-phase source (clip) ANN
    if quantized_start and args.method not in METHODS:
        raise ValueError(f"--init {args.init} is a quantized ({start_config['method']}) network: continue it with a "
                         f"quantization method ({', '.join(METHODS)}), or start {args.method} from a float one")
    checkpoint = args.out / "checkpoint.pt"
    if checkpoint.exists() and not args.resume:
        raise ValueError(f"{checkpoint} exists: add --resume to continue it, or choose another --out")
    device = init_from_env(args.device)
    torch.manual_seed(args.seed)
    events = args.dataset in EVENT_DATASETS
    if events and args.method not in DIRECT_METHODS:
        raise ValueError(f"{args.dataset} is event data (frames over T steps): train it with a direct method "
                         f"({', '.join(DIRECT_METHODS)})")
    splits = (event_dataset(args.dataset, args.data_dir, args.time_steps, args.download) if events else
              get_dataset(args.dataset, args.data_dir, args.download, args.augment, args.cutout))
    if args.data_on_device:
        if args.dataset not in ("cifar10", "cifar100", "mnist", "fashion-mnist") or args.augment != "standard" \
                or args.cutout:
            raise ValueError("--data-on-device holds CIFAR-10/100 or (Fashion-)MNIST on the device with the standard "
                             "augmentation; drop it for other data sets, --augment or --cutout")
        train_data, test_data = (DeviceLoader.from_dataset(d, args.batch_size, args.dataset, device, train=t,
                                                           seed=args.seed)
                                 for d, t in ((splits.train, True), (splits.test, False)))
    else:
        train_data, test_data = splits.loaders(args.batch_size, seed=args.seed, num_workers=args.workers)
    extra = {"weights": args.weights} if args.weights else {}
    model = create_model(args.model, splits.num_classes, splits.in_channels, **extra)
    if quantized_start:
        model = build_for_method(model, start_config)
    if init_state is not None:
        restore(init_state, model, rng=False)
    config = {"dataset": args.dataset, "data_dir": str(args.data_dir) if args.data_dir else None,
              "model": args.model, "num_classes": splits.num_classes, "in_channels": splits.in_channels,
              "image_size": splits.image_size, "event_input": events, "method": args.method, "p": args.p, "seed": args.seed, "batch_size": args.batch_size}
    if args.method == "dual-phase":
        config["noise_p"] = args.noise_p
    if args.method in DIRECT_METHODS:
        config.update(T=args.time_steps, tau=args.tau, threshold=args.threshold, alpha=args.alpha,
                      noise_p=args.noise_p, reset=args.reset, surrogate=args.surrogate, steepness=args.steepness,
                      noise_decay=args.noise_decay, noise_milestones=args.noise_milestones)
    if quantized_start:  # keep the thresholds it learned, now with this method's quantizer
        model = requantize(model, quant_config(config)).to(device)
    else:
        model = build_for_method(model, config).to(device)
        if args.method in METHODS and not checkpoint.exists():  # a resumed run loads its trained scales
            init_scales(model, next(iter(train_data)))
    trained = torch.compile(model) if args.compile else model
    if is_main():
        detail = {**{m: f", p={args.p}" for m in METHODS}, **{m: f", T={args.time_steps}" for m in DIRECT_METHODS}}
        print(f"[train] {args.model} on {args.dataset}, method {args.method}{detail.get(args.method, '')}, "
              f"{args.epochs} epochs, device {device}")
    history = fit(trained, train_data, args.epochs, optimizer=optimizer, device=device,
                  progress=_progress(args), desc=args.method, checkpoint=checkpoint, resume=args.resume,
                  config=config, amp=args.amp, log_dir=args.out,
                  on_epoch_start=model.start_epoch if args.method in DIRECT_METHODS else None)
    accuracy = evaluate(model, test_data, device)
    if is_main():
        export_weights(model, args.out / "model.safetensors", config)
        write_json({"config": config, "ann_accuracy": accuracy, "history": history}, args.out / "results.json")
        print(f"[train] test accuracy {100 * accuracy:.2f}%; wrote {checkpoint} and {args.out / 'model.safetensors'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .conversion import convert

    _check_positive(args, "T", "batch_size", "calibration_samples", "calibration_epochs",
                    allow_zero=("calibration_epochs",))
    if args.calibration_T is not None:
        _check_positive(args, "calibration_T")
    _simulate_options(args)
    state = load_checkpoint(args.checkpoint)
    cfg = state["config"]
    device = init_from_env(args.device)
    data_dir = args.data_dir or cfg.get("data_dir")
    splits = (event_dataset(cfg["dataset"], data_dir, cfg["T"]) if cfg.get("event_input") else
              get_dataset(cfg["dataset"], data_dir))
    train_data, test_data = splits.loaders(args.batch_size, seed=args.seed, num_workers=args.workers)
    model = build_for_method(create_model(cfg["model"], cfg["num_classes"], cfg["in_channels"]), cfg)
    quantized = cfg["method"] in METHODS  # converted and simulated; float and direct SNNs are evaluated as trained
    restore(state, model, rng=False)
    start = time.time()
    name = cfg["method"]
    if args.calibrate != "none" and not quantized:
        raise ValueError(f"--calibrate needs a quantized checkpoint ({', '.join(METHODS)}); this one is {name}")
    rows = {name: {"ann_accuracy": evaluate(model.to(device), test_data, device)}}
    if quantized:
        snn = convert(model)
        if args.calibrate != "none":
            rows[name]["calibration"] = _phase2(args, snn, model, train_data)
        result = simulate(snn, test_data, T=args.T, device=device, progress=_progress(args),
                          **_simulate_options(args))
        rows[name].update(result.row())
    args.out = args.out or args.checkpoint.parent
    if is_main():
        _print_tables(rows, f"Top-1 accuracy (%) on {cfg['dataset']} test, {cfg['model']}"
                      + (f", p={cfg['p']}" if quantized else ""))
        _write_results(args, rows, device, start, title=f"{cfg['model']} on {cfg['dataset']}",
                       extra={"checkpoint": str(args.checkpoint), "checkpoint_config": cfg}, name="evaluation")
    return 0


def _phase2(args: argparse.Namespace, snn, qmodel, train_data) -> dict:
    from .dual_phase import dual_phase_calibrate

    T = args.calibration_T or args.T
    print(f"[phase II] {args.calibrate} calibration at T={T} on {args.calibration_samples} training images")
    report = dual_phase_calibrate(snn, qmodel, train_data, T=T, coarse=args.calibrate in ("coarse", "both"),
                                  fine=args.calibrate in ("fine", "both"), num_samples=args.calibration_samples,
                                  epochs=args.calibration_epochs, seed=args.seed, final_coarse=args.final_coarse)
    for layer, r in report.get("fine", {}).items():
        print(f"  {layer}: held-out KL {r['loss_before']:.3g} -> {r['loss_after']:.3g}")
    return {"T": T, "mode": args.calibrate, "samples": args.calibration_samples, **report}


def _write_results(args, rows: dict, device, start: float, title: str, extra: dict | None = None,
                   name: str = "results") -> None:
    json_path, png_path = args.out / f"{name}.json", args.out / "accuracy_vs_T.png"
    write_json({"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                **(extra or {}), "device": str(device), "torch": torch.__version__,
                "seconds": round(time.time() - start, 1), "results": rows}, json_path)
    curves = {m: r for m, r in rows.items() if "snn_accuracy" in r}
    if curves:
        plot_accuracy(curves, png_path, title=title)
    print(f"\nwrote {json_path}" + (f" and {png_path}" if curves else "") + f" ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
