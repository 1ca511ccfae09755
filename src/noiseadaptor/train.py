"""The training loop (float pre-training and quantization-aware training share it) and ANN evaluation.

The paper's recipe: SGD with momentum 0.9, cross-entropy, cosine learning-rate schedule, lr 0.05.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


def fit(model: nn.Module, train_data: Iterable, epochs: int, lr: float = 0.05, weight_decay: float = 5e-4,
        momentum: float = 0.9, val_data: Iterable | None = None, device: torch.device | str | None = None,
        progress: bool = True, desc: str = "train") -> list[dict]:
    """Train `model` in place; returns one dict of metrics per epoch."""
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    history = []
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in train_data:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * y.numel()
            correct += (logits.argmax(1) == y).sum().item()
            seen += y.numel()
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / max(seen, 1),
               "train_acc": correct / max(seen, 1)}
        schedule.step()
        if val_data is not None:
            row["val_acc"] = evaluate(model, val_data, device)
        history.append(row)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
    return history


@torch.inference_mode()
def evaluate(model: nn.Module, data: Iterable, device: torch.device | str | None = None) -> float:
    """Top-1 accuracy (0-1) of an ANN (float or quantized; eval mode, so no quantization noise)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.to(device).eval()
    correct = seen = 0
    for x, y in data:
        x, y = x.to(device), y.to(device)
        correct += (model(x).argmax(1) == y).sum().item()
        seen += y.numel()
    model.train(was_training)
    if seen == 0:
        raise ValueError("evaluate() got no data: the loader yielded no batches")
    return correct / seen
