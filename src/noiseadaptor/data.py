"""Data sets by name. ``digits`` is embedded (it ships inside scikit-learn): the default task needs no
download and runs anywhere."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset


@dataclass
class DataSplits:
    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int

    def loaders(self, batch_size: int, eval_batch_size: int | None = None, seed: int = 0,
                num_workers: int = 0) -> tuple[DataLoader, DataLoader]:
        generator = torch.Generator().manual_seed(seed)
        train = DataLoader(self.train, batch_size=batch_size, shuffle=True, generator=generator,
                           num_workers=num_workers, drop_last=len(self.train) > batch_size)
        test = DataLoader(self.test, batch_size=eval_batch_size or batch_size, num_workers=num_workers)
        return train, test


DATASETS = ("digits",)


def get_dataset(name: str) -> DataSplits:
    if name == "digits":
        return digits()
    raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")


def digits(test_fraction: float = 0.2, split_seed: int = 0) -> DataSplits:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels), split 80/20 with a fixed seed and
    standardised with the training split's mean and std."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed))
    n_test = int(round(len(labels) * test_fraction))
    test_idx, train_idx = order[:n_test], order[n_test:]
    mean, std = images[train_idx].mean(), images[train_idx].std()
    images = (images - mean) / std
    return DataSplits(train=TensorDataset(images[train_idx], labels[train_idx]),
                      test=TensorDataset(images[test_idx], labels[test_idx]),
                      num_classes=10, in_channels=1, image_size=8)
