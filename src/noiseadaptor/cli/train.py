"""`noiseadaptor train`: one run (a RunConfig from flags and a recipe) with checkpoints and resume."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from ..ann.calibrate import init_scales
from ..ann.models import create_model
from ..ann.preparation import requantize
from ..data import DATASETS, DeviceLoader, get_dataset, reconstruction
from ..data.events import EVENT_DATASETS, event_dataset
from ..distributed import init_from_env, is_main
from ..io.checkpoint import export_weights, load_checkpoint, restore
from ..io.files import write_json
from ..methods import list_methods
from ..runconfig import FACTS, RunConfig, check_method_fields, checkpoint_run
from ..training import evaluate, fit
from ..training.reconstruct import reconstruction_loss, reconstruction_quality
from .common import (
    add_config_arguments,
    command_parser,
    common_args,
    output_folder,
    read_recipe,
    show_progress,
)

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


def add_parser(commands) -> argparse.ArgumentParser:
    """`noiseadaptor train`'s parser, added to the sub-command set `commands`."""
    p = command_parser(
        commands,
        "train",
        help="float pre-training or quantization-aware training on real data",
        description="Train a float network (--method float), a quantized one from float "
        "weights (--init or --weights), or an SNN directly, with checkpoints and resume. "
        "The flags are the fields of noiseadaptor.runconfig.RunConfig; a recipe is a YAML "
        "file of them.",
        epilog=TRAIN_EPILOG,
    )
    p.add_argument(
        "--recipe",
        type=Path,
        help="YAML file of run settings (keys: the long flags with _ for -, "
        "and out); flags given on the command line win",
    )
    add_run_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    common_args(p, out=None, seed=False)
    return p


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, RunConfig, {"dataset": DATASETS + EVENT_DATASETS})  # a method may be spelled na[p=4]


def run_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of a train command line: the recipe's values, then the flags given, validated (settings
    of another method refused; a 0.1 recipe's noise_p read as its method's probability). With --resume and
    a checkpoint in --out, the checkpoint's settings come first: `--out DIR --resume` alone continues the
    run, and a flag that changes what it trains is refused when the checkpoint loads. Also settles the
    invocation: --out (flag, else the recipe's out, else runs/train) and --resume (flag or recipe)."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    values = read_recipe(args.recipe) if args.recipe is not None else {}
    recipe_out, recipe_resume = values.pop("out", None), values.pop("resume", False)
    if not isinstance(recipe_resume, bool):
        raise ValueError(f"recipe {args.recipe}: resume must be true or false, got {recipe_resume!r}")
    args.out = output_folder(args.out or Path(recipe_out or "runs/train"))
    args.resume = args.resume or recipe_resume
    given = {**values, **{k: v for k, v in vars(args).items() if k in fields}}
    recorded = {}
    if args.resume and (args.out / "checkpoint.pt").is_file():  # the run's own settings, then what is given
        saved = load_checkpoint(args.out / "checkpoint.pt")
        if not isinstance(saved.get("config"), dict):
            raise ValueError(f"{args.out / 'checkpoint.pt'} has no config entry: not one noiseadaptor train wrote")
        run = checkpoint_run(saved["config"], f"checkpoint {args.out / 'checkpoint.pt'}")
        recorded = {k: v for k, v in run.to_dict().items() if k not in FACTS}
    method = given.get("method", recorded.get("method", RunConfig.method))
    check_method_fields(method, set(given))
    run = RunConfig.from_dict({**recorded, **given}, source=f"recipe {args.recipe}" if args.recipe else "command line")
    if "p" in given and run.p != given["p"]:  # the method's spelling set its own p ('na[p=4]')
        raise ValueError(f"--p {given['p']} and method {method} (p={run.p}) disagree: give p once")
    return run


def main(args: argparse.Namespace) -> int:
    run = args.run = run_config(args)
    method = run.method_info
    init_state, start = _starting_point(run)
    checkpoint = args.out / "checkpoint.pt"
    if checkpoint.exists() and not args.resume:
        raise ValueError(f"{checkpoint} exists: add --resume to continue it, or choose another --out")
    _warn_at_start(run, args.resume, checkpoint)
    method.check(run)
    _check_data(run)
    device = init_from_env(args.device)
    torch.manual_seed(run.seed)
    run, train_data, test_data = _data(run, device)
    fresh = not checkpoint.exists()
    model = _model(run, init_state, start, device, train_data, fresh=fresh, progress=show_progress(args))
    trained = torch.compile(model) if run.compile else model
    if is_main():
        print(
            f"[train] {run.model} on {run.dataset}, method {run.method}{method.banner(run)}, {run.epochs} epochs, "
            f"device {device}"
        )
    reconstruct = run.task == "reconstruct"
    history = fit(
        trained,
        train_data,
        run.epochs,
        optimizer=method.optimizer(run),
        criterion=reconstruction_loss if reconstruct else None,
        val_data=None if reconstruct else test_data,
        val_name="test_acc",
        device=device,
        progress=show_progress(args),
        desc=run.method,
        checkpoint=checkpoint,
        resume=args.resume,
        config=run.to_dict(),
        amp=run.amp,
        log_dir=args.out,
        on_epoch_start=method.epoch_hook(model),
    )
    if reconstruct:
        image = (run.in_channels, run.image_size, run.image_size)
        measured = reconstruction_quality(model, test_data, image, device)
        line = f"test PSNR {measured['psnr']:.2f} dB, SSIM {measured['ssim']:.3f}"
    else:
        measured = {"ann_accuracy": evaluate(model, test_data, device, progress=show_progress(args))}
        line = f"test accuracy {100 * measured['ann_accuracy']:.2f}%"
    if is_main():
        config = run.to_dict()
        export_weights(model, args.out / "model.safetensors", config)
        write_json({"config": config, **measured, "history": history}, args.out / "results.json")
        print(f"[train] {line}; wrote {checkpoint} and {args.out / 'model.safetensors'}")
    return 0


def _starting_point(run: RunConfig) -> tuple[dict | None, RunConfig | None]:
    """The --init checkpoint's state and its run (None, None without --init), refused where it cannot
    start this method."""
    if run.init is None:
        return None, None
    if not Path(run.init).is_file():
        raise ValueError(f"--init {run.init}: no such checkpoint")
    state = load_checkpoint(run.init)
    start = checkpoint_run(state["config"], f"--init {run.init}")
    if start.method_info.converts and not run.method_info.converts:  # e.g. a clip ANN
        raise ValueError(
            f"--init {run.init} is a quantized ({start.method}) network: continue it with a "
            f"quantization method ({', '.join(list_methods('conversion'))}), or start {run.method} "
            "from a float one"
        )
    return state, start


def _warn_at_start(run: RunConfig, resume: bool, checkpoint: Path) -> None:
    """What a run may do, but likely not what was meant: say it on stderr before the work."""
    if resume and not checkpoint.exists():  # a mistyped --out would otherwise start over unannounced
        print(f"noiseadaptor train: warning: --resume: no {checkpoint} yet, starting a new run", file=sys.stderr)
    if run.method_info.converts and run.init is None and run.weights is None and not checkpoint.exists():
        print(
            f"noiseadaptor train: warning: {run.method} from random weights (no --init, no --weights): its scales "
            "start from an untrained network; Noise Adaptor fine-tunes a pre-trained float one (train it with "
            "--method float, then pass it as --init)",
            file=sys.stderr,
        )


def _check_data(run: RunConfig) -> None:
    if run.data_on_device and (
        run.task == "reconstruct"
        or run.dataset not in ("cifar10", "cifar100", "mnist", "fashion-mnist")
        or run.augment != "standard"
        or run.cutout
    ):
        raise ValueError(
            "--data-on-device holds CIFAR-10/100 or (Fashion-)MNIST on the device with the standard "
            "augmentation (classification); drop it for other data sets, --augment, --cutout or --task reconstruct"
        )


def _data(run: RunConfig, device: torch.device):
    """(run with the data set's facts recorded, train loader, test loader)."""
    events = run.dataset in EVENT_DATASETS
    splits = (
        event_dataset(run.dataset, run.data_dir, run.time_steps, run.download)
        if events
        else get_dataset(run.dataset, run.data_dir, run.download, run.augment, run.cutout)
    )
    if run.task == "reconstruct":
        splits = reconstruction(splits)
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
    return run, train_data, test_data


def _model(
    run: RunConfig, init_state: dict | None, start: RunConfig | None, device, train_data, fresh: bool, progress: bool
):
    """The network to train: built for the method, from --init's weights when given; a fresh quantized
    one gets its scales initialised on the first training batch (a resumed one loads its trained scales)."""
    method = run.method_info
    quantized_start = start is not None and start.method_info.converts
    extra = {"weights": run.weights} if run.weights else {}
    model = create_model(run.model, run.num_classes, run.in_channels, **extra)
    if quantized_start:
        model = start.method_info.build(model, start)
    if init_state is not None:
        restore(init_state, model, rng=False)
    if quantized_start:  # keep the thresholds it learned, now with this method's quantizer
        return requantize(model, method.quant(run)).to(device)
    model = method.build(model, run).to(device)
    if method.converts and fresh:
        init_scales(model, next(iter(train_data)), progress=progress)
    return model
