"""The training loop: float pre-training, quantization-aware training and direct SNN training share
it, with ANN evaluation. The optimiser it builds is `optim.OptimizerConfig`.

Under torchrun the model is wrapped in DistributedDataParallel; only process 0 writes files.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from tqdm.std import tqdm as std_tqdm

from ..ann.models import check_input
from ..ann.quantizer import QuantReLU
from ..checks import module_device, positive_int
from ..distributed import all_reduce_sum, barrier, broadcast_state, is_distributed, is_main
from ..io.checkpoint import load_checkpoint, restore, save_checkpoint
from ..io.files import exclusive, remove_stale_temporaries
from ..progress import Progress, duration, progress_over
from .optim import OptimizerConfig, build_optimizer, parameter_roles


def fit(
    model: nn.Module,
    train_data: Iterable,
    epochs: int,
    lr: float | None = None,
    weight_decay: float | None = None,
    optimizer: OptimizerConfig | None = None,
    val_data: Iterable | None = None,
    val_name: str = "val_acc",
    device: torch.device | str | None = None,
    progress: Progress = True,
    desc: str = "train",
    checkpoint: str | Path | None = None,
    resume: bool = False,
    config: dict | None = None,
    amp: bool = False,
    log_dir: str | Path | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[dict]:
    """Train `model` in place for `epochs` epochs; returns one dict of metrics per epoch. optimizer: an
    OptimizerConfig (default: SGD, momentum 0.9, lr 0.05, weight decay 5e-4 but on surrogate widths, cosine
    schedule), its lr and weight_decay overridden by `lr`, `weight_decay`. checkpoint: written atomically
    after every epoch, with `config`; resume: continue from it, refusing other settings. amp: bfloat16
    autocast. log_dir: log.csv (and TensorBoard when installed). progress: bars, or ("lines") a line per
    epoch with its time and what is left. val_data: evaluated after each epoch as `val_name`. on_epoch_start(epoch)
    before each epoch (e.g. a noise schedule), on_epoch_end(epoch, row) after it (may add to the row).
    criterion(output, target): the loss instead of cross-entropy (then no train_acc)."""
    positive_int(epochs, "epochs", zero=True)
    _check_batches(model, train_data)
    given = {k: v for k, v in (("lr", lr), ("weight_decay", weight_decay)) if v is not None}
    optim = OptimizerConfig(**{**asdict(optimizer or OptimizerConfig()), **given})
    device = torch.device(device) if device is not None else module_device(model)
    optimizer, schedule = build_optimizer(model.to(device), optim, epochs)
    config = {**(config or {}), "epochs": epochs, "lr": optim.lr, "weight_decay": optim.weight_decay}
    writer = checkpoint is not None and is_main()
    with exclusive(checkpoint) if writer else contextlib.nullcontext():  # a second run on it is refused
        history = []

        def save(epoch: int) -> None:
            save_checkpoint(checkpoint, model, epoch=epoch, config=config, optimization=asdict(optim),
                            optimizer=optimizer, scheduler=schedule, metrics={"history": history})  # fmt: skip

        start = _start(checkpoint, resume, writer, model, optimizer, schedule, optim, config, history)
        step = _Epoch(model, train_data, optimizer, schedule, device, amp, progress is True and is_main(), criterion,
                      val=(val_data, val_name), hooks=(on_epoch_start, on_epoch_end))  # fmt: skip
        logger = (
            _EpochLogger(log_dir, f"[{desc}] epoch {{}}/{epochs}" if progress == "lines" else None, epochs)
            if is_main()
            else None
        )
        bar = tqdm(range(start, epochs), desc=desc, disable=not step.shown, leave=False, initial=start, total=epochs)
        _run_epochs(bar, step, history, logger, save if checkpoint is not None else None)
        if epochs == 0 and checkpoint is not None and not Path(checkpoint).exists() and is_main():
            save(0)  # no training asked: the starting point (e.g. a quantized copy, scales initialised) is the result
        return history


def _check_batches(model: nn.Module, train_data) -> None:
    """Refuse batches of one image for a network with BatchNorm: its training statistics of one image are
    noise, and the network trains to chance level without an error."""
    if getattr(train_data, "batch_size", None) == 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                            for m in model.modules()):  # fmt: skip
        raise ValueError("batch size 1 with BatchNorm: its statistics of one image are noise; give --batch-size 2 "
                         "or more (32 or more is usual)")  # fmt: skip


def _run_epochs(bar, step, history: list[dict], logger, save) -> None:
    """Each epoch of `bar`: trained (`step`), its metrics appended to `history`, logged and saved by process 0."""
    for epoch in bar:
        row = step(epoch)
        history.append(row)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
        if is_main():
            logger.log(row)
            if save is not None:
                save(epoch + 1)
        barrier()


def _start(checkpoint, resume: bool, writer: bool, model, optimizer, schedule, optim, config, history) -> int:
    """The epoch to start from: 0, or where `checkpoint` stopped when resuming (its history appended to
    `history`). A writer first removes the temporaries of a write killed in an earlier run (ours alone:
    we hold the lock)."""
    if writer:
        for name in (Path(checkpoint), Path(checkpoint).with_suffix(".json")):
            remove_stale_temporaries(name)
    if not (resume and checkpoint is not None and Path(checkpoint).exists()):
        return 0
    start, earlier = _resume(load_checkpoint(checkpoint), model, optimizer, schedule, optim, config)
    history.extend(earlier)
    return start


class _Epoch:
    """One training epoch of `fit` (under DistributedDataParallel when distributed): returns its metrics row,
    after checking that the network is still usable, and steps the schedule."""

    def __init__(self, model, data, optimizer, schedule, device, amp: bool, shown: bool, criterion, val, hooks):
        self.model, self.data, self.optimizer, self.schedule = model, data, optimizer, schedule
        self.device, self.amp, self.shown, self.criterion = device, amp, shown, criterion
        (self.val_data, self.val_name), (self.on_start, self.on_end) = val, hooks
        self.net = (
            nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
            if is_distributed()
            else model
        )

    def __call__(self, epoch: int) -> dict:
        self.net.train()
        epoch_aware = self.data if hasattr(self.data, "set_epoch") else getattr(self.data, "sampler", None)
        if hasattr(epoch_aware, "set_epoch"):
            epoch_aware.set_epoch(epoch)
        if self.on_start is not None:
            self.on_start(epoch)
        metrics = train_one_epoch(
            self.net, self.data, self.optimizer, self.device, self.amp, progress=self.shown, criterion=self.criterion
        )
        broadcast_state(self.model)  # every process evaluates the network rank 0 saves (BatchNorm statistics)
        row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **metrics}
        check_trained(self.model, epoch + 1, row["train_loss"])  # before any save: the last good checkpoint stays
        self.schedule.step()
        if self.val_data is not None:
            row[self.val_name] = evaluate(self.model, self.val_data, self.device)
        if self.on_end is not None:
            self.on_end(epoch, row)
        return row


def _resume(
    state: dict, model: nn.Module, optimizer, schedule, optim: OptimizerConfig, config: dict
) -> tuple[int, list[dict]]:
    """Load a checkpoint into the live model, optimiser and schedule (refusing other settings); returns the
    epoch reached and the metrics history so far."""
    saved = state.get("optimization") or state["config"].get("optimization")  # beside the config since 0.2
    if saved is None:  # written before 0.1's optimiser roles: SGD on every parameter, which is today's
        widths = any(role == "width" for role, _ in parameter_roles(model))  # default without widths
        saved = asdict(OptimizerConfig(lr=optim.lr, weight_decay=optim.weight_decay, momentum=optim.momentum,
                                       no_decay=() if widths else ("width",)))  # fmt: skip
    # fields added since (restart_epochs): their defaults are what the earlier code did
    state = {**state, "config": {**state["config"], "optimization": {**asdict(OptimizerConfig()), **saved}}}
    config = {**config, "optimization": asdict(optim)}
    epochs, earlier_epochs = config["epochs"], state["config"].get("epochs", config["epochs"])
    if earlier_epochs != epochs:  # e.g. a finished run trained further
        state = _with_epochs(state, epochs)
    start = restore(state, model, optimizer, schedule, config)
    if earlier_epochs != epochs:
        _lay_schedule(optimizer, schedule, start)
        warnings.warn(
            f"resumed at epoch {start} with {epochs} epochs instead of the checkpoint's {earlier_epochs}: the "
            f"cosine schedule continues as that of a {epochs}-epoch run (not the same as one run start to end)",
            stacklevel=3,
        )
    return start, state["metrics"].get("history", [])


def _with_epochs(state: dict, epochs: int) -> dict:
    """A checkpoint's state to resume with another total of epochs: its schedule is laid anew."""
    reached = int(state["epoch"])
    if epochs < reached:
        raise ValueError(f"the checkpoint has trained {reached} epochs already; give --epochs {reached} or more")
    return {**state, "config": {**state["config"], "epochs": epochs}, "scheduler": None}


def _lay_schedule(optimizer, schedule, start: int) -> None:
    """Move a fresh schedule to epoch `start` from the base learning rates (not the loaded, decayed ones)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": no step is owed here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(start):
            schedule.step()


def train_one_epoch(
    net: nn.Module,
    data: Iterable,
    optimizer,
    device: torch.device,
    amp: bool = False,
    progress: bool = False,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """One pass over `data` with cross-entropy (or `criterion(output, target)`, e.g. F.mse_loss for a
    reconstruction); returns the epoch's mean training loss and, for cross-entropy, accuracy, summed over
    processes under torchrun. progress: a bar over the batches."""
    classify = criterion is None
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, seen
    # tqdm.std: tqdm.auto's asyncio variant calls iter() once more, and a DataLoader's iter() draws from the RNG
    batches = std_tqdm(data, desc="batches", leave=False) if progress else data
    for i, (x, y) in enumerate(batches):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if i == 0:
            check_input(net, x)
        with _autocast(device, amp):
            logits = net(x)
            if i == 0 and classify:  # once per epoch (a check per batch would wait for the GPU every step)
                _check_labels(y, logits)
            loss = F.cross_entropy(logits, y) if classify else criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = len(y)
        correct = (logits.argmax(1) == y).sum() if classify else torch.zeros((), device=device)
        totals += torch.stack([loss.detach() * n, correct, torch.tensor(n, device=device)]).double()
    loss_sum, correct, seen = all_reduce_sum(totals).tolist()
    if seen == 0:
        raise ValueError(
            "the training data yielded no batches (an empty data set, or fewer samples than one batch with drop_last)"
        )
    return {"train_loss": loss_sum / seen, **({"train_acc": correct / seen} if classify else {})}


def _check_labels(y: torch.Tensor, logits: torch.Tensor) -> None:
    if y.dtype.is_floating_point or y.dim() != 1:
        return  # soft targets: cross-entropy checks their shape itself
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= logits.shape[1]:
        raise ValueError(
            f"labels run from {low} to {high} but the network has {logits.shape[1]} outputs: the data "
            "set and the model's num_classes disagree"
        )


def non_finite(model: nn.Module) -> list[str]:
    """The parameters and floating-point buffers (BatchNorm's running statistics) of `model` holding a NaN or
    an infinity."""
    named = itertools.chain(model.named_parameters(), model.named_buffers())
    return [name for name, t in named if t.is_floating_point() and not torch.isfinite(t).all()]


class TrainingDiverged(ValueError):
    """Training left the network unusable (a non-finite loss or parameter, a quantizer threshold <= 0)."""


def check_trained(model: nn.Module, epoch: int, loss: float) -> None:
    """Raise TrainingDiverged, naming the epoch and what to try, if `model` cannot be used after `epoch`."""
    import math

    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"epoch {epoch}: the training loss is {loss} (diverged); the last good checkpoint is "
            "kept. Lower the learning rate (--lr) and resume or restart"
        )
    bad = non_finite(model)
    if bad:
        raise TrainingDiverged(
            f"epoch {epoch}: {len(bad)} parameter or statistics tensors are not finite (first: {bad[0]}); the "
            "last good checkpoint is kept. Lower the learning rate (--lr)"
        )
    for name, module in model.named_modules():
        if isinstance(module, QuantReLU) and not module.threshold.item() > 0:
            raise TrainingDiverged(
                f"epoch {epoch}: quantizer {name or 'activation'} has threshold "
                f"{module.threshold.item():.4g} <= 0 (its scale gradient overshot), so it cannot "
                "become a spiking neuron; the last good checkpoint is kept. Lower the learning rate "
                "(--lr), or start from a float network (--init)"
            )


@torch.inference_mode()
def evaluate(
    model: nn.Module, data: Iterable, device: torch.device | str | None = None, progress: Progress = False
) -> float:
    """Top-1 accuracy (0-1) of an ANN (float or quantized; eval mode, so no quantization noise). Under
    torchrun, counts are summed over processes (each sample once: see ShardedEvalSampler). `progress`: a
    bar over the batches (on the main process)."""
    device = torch.device(device) if device is not None else module_device(model)
    was_training = model.training
    model.to(device).eval()
    counts = torch.zeros(2, dtype=torch.long, device=device)  # correct, seen
    for i, (x, y) in enumerate(progress_over(data, "evaluate", progress if is_main() else False)):
        x, y = x.to(device), y.to(device)
        if i == 0:
            check_input(model, x)
        logits = model(x)
        if i == 0:
            _check_labels(y, logits)
        counts[0] += (logits.argmax(1) == y).sum()
        counts[1] += y.numel()
    model.train(was_training)
    correct, seen = all_reduce_sum(counts).tolist()
    if seen == 0:
        raise ValueError("evaluate() got no data: the loader yielded no batches")
    return correct / seen


def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class _EpochLogger:
    """Each epoch's metrics: one printed line when `line` is given (a format with {} for the epoch, for
    output where no bar is drawn: a batch job, nohup), with the epoch's time and an estimate of what is left
    of `epochs`; and under `log_dir`, log.csv (appended, so a resumed run continues it) and TensorBoard
    scalars if tensorboard is there."""

    def __init__(self, log_dir: str | Path | None, line: str | None = None, epochs: int = 0):
        self.dir, self.line, self.tensorboard = None if log_dir is None else Path(log_dir), line, None
        self.epochs, self.begin, self.done = epochs, time.monotonic(), 0
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(self.dir))
        except ImportError:  # optional
            pass

    def log(self, row: dict) -> None:
        if self.line is not None:
            self.done += 1
            each = (time.monotonic() - self.begin) / self.done
            metrics = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch")
            left = f", about {duration(each * (self.epochs - row['epoch']))} left" if row["epoch"] < self.epochs else ""
            print(f"{self.line.format(row['epoch'])}: {metrics} ({duration(each)}/epoch{left})", file=sys.stderr,
                  flush=True)  # fmt: skip
        if self.dir is None:
            return
        path = self.dir / "log.csv"
        new = not path.exists() or row["epoch"] == 1
        with path.open("w" if new else "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.tensorboard.add_scalar(key, value, row["epoch"])
            self.tensorboard.flush()
