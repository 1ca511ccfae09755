"""The training loop (float pre-training and quantization-aware training share it) and ANN evaluation.

The paper's recipe: SGD with momentum 0.9, cross-entropy, cosine learning-rate schedule, lr 0.05.
Under torchrun the model is wrapped in DistributedDataParallel; only process 0 writes files.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, restore, save_checkpoint
from .distributed import all_reduce_sum, barrier, is_distributed, is_main


def fit(model: nn.Module, train_data: Iterable, epochs: int, lr: float = 0.05, weight_decay: float = 5e-4,
        momentum: float = 0.9, val_data: Iterable | None = None, device: torch.device | str | None = None,
        progress: bool = True, desc: str = "train", checkpoint: str | Path | None = None,
        resume: bool = False, config: dict | None = None, amp: bool = False,
        log_dir: str | Path | None = None, on_epoch_start: Callable[[int], None] | None = None,
        on_epoch_end: Callable[[int, dict], None] | None = None) -> list[dict]:
    """Train `model` in place for `epochs` epochs; returns one dict of metrics per epoch.

    checkpoint: file written (atomically) after every epoch. resume: continue from it when it exists,
    refusing one made with a different `config`. amp: bfloat16 autocast (CUDA and CPU).
    log_dir: per-epoch metrics go to log_dir/log.csv, and to TensorBoard there when it is installed.
    on_epoch_start(epoch) runs before each epoch (e.g. a noise schedule); on_epoch_end(epoch, row) after
    it, and may add entries to the epoch's metrics row.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    config = {**(config or {}), "epochs": epochs, "lr": lr, "weight_decay": weight_decay}
    start, history = 0, []
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        start = restore(state, model, optimizer, schedule, config)
        history = state["metrics"].get("history", [])
    net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if is_distributed() else model

    logger = _EpochLogger(log_dir) if log_dir is not None and is_main() else None
    bar = tqdm(range(start, epochs), desc=desc, disable=not (progress and is_main()), leave=False,
               initial=start, total=epochs)
    for epoch in bar:
        net.train()
        epoch_aware = train_data if hasattr(train_data, "set_epoch") else getattr(train_data, "sampler", None)
        if hasattr(epoch_aware, "set_epoch"):
            epoch_aware.set_epoch(epoch)
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, seen
        for x, y in train_data:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with _autocast(device, amp):
                logits = net(x)
                loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            totals += torch.stack([loss.detach() * y.numel(), (logits.argmax(1) == y).sum(),
                                   torch.tensor(y.numel(), device=device)]).double()
        loss_sum, correct, seen = all_reduce_sum(totals).tolist()
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / max(seen, 1),
               "train_acc": correct / max(seen, 1)}
        schedule.step()
        if val_data is not None:
            row["val_acc"] = evaluate(model, val_data, device)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        history.append(row)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
        if is_main():
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, epoch=epoch + 1, config=config, optimizer=optimizer,
                                scheduler=schedule, metrics={"history": history})
            if logger is not None:
                logger.log(row)
        barrier()
    if epochs == 0 and checkpoint is not None and not Path(checkpoint).exists() and is_main():
        # no training asked: the starting point (e.g. a quantized copy with initialised scales) is the result
        save_checkpoint(checkpoint, model, epoch=0, config=config, optimizer=optimizer, scheduler=schedule,
                        metrics={"history": history})
    return history


@torch.inference_mode()
def evaluate(model: nn.Module, data: Iterable, device: torch.device | str | None = None) -> float:
    """Top-1 accuracy (0-1) of an ANN (float or quantized; eval mode, so no quantization noise). Under
    torchrun, counts are summed over processes (each sample once: see ShardedEvalSampler)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.to(device).eval()
    counts = torch.zeros(2, dtype=torch.long, device=device)  # correct, seen
    for x, y in data:
        x, y = x.to(device), y.to(device)
        counts[0] += (model(x).argmax(1) == y).sum()
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
    """log.csv (appended, so a resumed run continues it) and TensorBoard scalars if tensorboard is there."""

    def __init__(self, log_dir: str | Path):
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(self.dir))
        except ImportError:  # optional
            self.tensorboard = None

    def log(self, row: dict) -> None:
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
