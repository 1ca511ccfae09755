"""Data sets by name, loaded with torchvision's own classes.

==============  ==========================================================================
digits          embedded (ships inside scikit-learn): the default task, no download
mnist           torchvision ``MNIST``: DIR/MNIST/raw/*-ubyte(.gz)
fashion-mnist   torchvision ``FashionMNIST``: DIR/FashionMNIST/raw/*-ubyte(.gz)
cifar10         torchvision ``CIFAR10`` (DIR/cifar-10-batches-py) or an image-folder tree
cifar100        torchvision ``CIFAR100`` (DIR/cifar-100-python) or an image-folder tree
imagenet        ``ImageFolder``: DIR/train/<class>/*.JPEG and DIR/val/<class>/*.JPEG
tiny-imagenet   Tiny-ImageNet-200 as distributed (DIR/train/<wnid>/images/*.JPEG, DIR/val/images/*.JPEG
                with DIR/val/val_annotations.txt) or with val/ as class folders; 64x64
==============  ==========================================================================

An image-folder tree is DIR/train/<class>/<image> and DIR/test/<class>/<image> (or val/). Training
augmentation is the standard one: random crop with 4-pixel padding and horizontal flip for 32x32
images (``augment="autoaugment"`` adds AutoAugment's CIFAR-10 policy, ``cutout`` > 0 erases a square of
that side), random-resized crop and flip for ImageNet.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import gzip
import os
import shutil
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

from ..distributed import ShardedEvalSampler, is_distributed, rank, world_size


@dataclass
class DataSplits:
    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # the inputs' normalisation (mean, std)

    def loaders(
        self, batch_size: int, eval_batch_size: int | None = None, seed: int = 0, num_workers: int = 0
    ) -> tuple[DataLoader, DataLoader]:
        """Shuffled training batches and ordered test batches.

        The training order is a function of (seed, epoch) alone (`fit` calls ``sampler.set_epoch``), so a
        resumed run sees the same batches as an uninterrupted one. Under torch.distributed each process
        gets its share: training through DistributedSampler, test through a sampler that never pads (so
        no sample is counted twice in accuracy).

        Workers are started anew each epoch (not persistent): a DataLoader draws its workers' seeds from
        the global RNG when an epoch's iteration starts, so with fresh workers every epoch draws at the same
        point of the RNG stream, which a checkpoint restores, and a resumed run is bit-identical to an
        uninterrupted one for any number of workers (persistent workers draw once, at the first epoch a
        process runs, which shifts the stream of a resumed run)."""
        common = dict(num_workers=num_workers, pin_memory=torch.cuda.is_available())
        shard = {} if is_distributed() else {"num_replicas": 1, "rank": 0}
        train_sampler = DistributedSampler(self.train, shuffle=True, seed=seed, drop_last=True, **shard)
        train = DataLoader(
            self.train, batch_size=batch_size, sampler=train_sampler, drop_last=len(self.train) > batch_size, **common
        )
        test = DataLoader(
            self.test, batch_size=eval_batch_size or batch_size, sampler=ShardedEvalSampler(self.test), **common
        )
        return train, test


DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagenet", "tiny-imagenet")
_STATS = {  # per-channel mean and std of the training images
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "tiny-imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet's, as is usual for it
}


def default_data_dir() -> Path:
    return Path(os.environ.get("NOISEADAPTOR_DATA", Path.home() / ".cache" / "noiseadaptor" / "data"))


def get_dataset(
    name: str, data_dir: str | Path | None = None, download: bool = False, augment: str = "standard", cutout: int = 0
) -> DataSplits:
    """Load a data set by name (see the module docstring for the layouts). Raises ValueError with the
    expected layout when the files are not there."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    if augment not in ("standard", "autoaugment", "none"):
        raise ValueError(f"augment must be 'standard', 'autoaugment' or 'none', got {augment!r}")
    augmented = name in ("cifar10", "cifar100", "tiny-imagenet")
    if (augment != "standard" and not augmented) or (cutout and (not augmented or augment == "none")):
        raise ValueError(
            f"--augment {augment} / --cutout {cutout} would be ignored on {name}: they apply to CIFAR-10/100 and "
            "Tiny ImageNet with augmentation on (digits, MNIST and ImageNet have fixed transforms)"
        )
    if name == "digits":
        return digits()
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if name in ("mnist", "fashion-mnist"):
        return _mnist(name, root, download)
    if name in ("cifar10", "cifar100"):
        return _cifar(name, root, download, augment, cutout)
    if name == "tiny-imagenet":
        return _tiny_imagenet(root, augment, cutout)
    return _imagenet(root)


def _transforms(name: str, train: bool, augment: str = "standard", cutout: int = 0):
    from torchvision import transforms as T

    mean, std = _STATS[name]
    normalize = [T.ToTensor(), T.Normalize(mean, std)]
    if name == "imagenet":
        crop = [T.RandomResizedCrop(224), T.RandomHorizontalFlip()] if train else [T.Resize(256), T.CenterCrop(224)]
        return T.Compose(crop + normalize)
    if not train or augment == "none" or name in ("mnist", "fashion-mnist"):
        return T.Compose(normalize)
    size = 64 if name == "tiny-imagenet" else 32
    steps = [T.RandomCrop(size, padding=4), T.RandomHorizontalFlip()]
    if augment == "autoaugment":
        steps.append(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10))
    steps += normalize
    if cutout > 0:  # Cutout (DeVries & Taylor 2017): one square of side `cutout`, erased to zero
        area = cutout * cutout / (size * size)
        steps.append(T.RandomErasing(p=1.0, scale=(area, area), ratio=(1.0, 1.0), value=0))
    return T.Compose(steps)


def _mnist(name: str, root: Path, download: bool) -> DataSplits:
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    root = _extracted_mnist(root / cls.__name__ / "raw", cls.__name__)
    try:
        splits = [cls(str(root), train=t, download=download, transform=_transforms(name, t)) for t in (True, False)]
    except RuntimeError as err:
        raise ValueError(
            f"{name}: not found under {root} ({err}). Expected torchvision's layout "
            f"{root}/{cls.__name__}/raw/*-ubyte(.gz); pass --download (needs internet) or "
            "--data-dir pointing at the folder that contains it"
        ) from err
    return DataSplits(*splits, num_classes=10, in_channels=1, image_size=28, stats=_STATS[name])


def _extracted_mnist(raw: Path, folder: str) -> Path:
    """The root torchvision's MNIST classes should read. MNIST is distributed as ``*-ubyte.gz`` files, which
    torchvision unpacks only inside download=True; where `raw` holds them without their unpacked copies,
    they are unpacked into the cache (default_data_dir()/unpacked, never into the data folder, which may be
    shared or read-only) and the cache is the root."""
    packed = sorted(raw.glob("*-ubyte.gz"))
    if not packed or all(a.with_suffix("").exists() for a in packed):
        return raw.parent.parent
    target = default_data_dir() / "unpacked" / folder / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for archive in packed:
        unpacked = target / archive.with_suffix("").name
        if unpacked.exists():
            continue
        partial = unpacked.with_name(unpacked.name + ".partial")  # never a half-written file under the real name
        try:
            with gzip.open(archive, "rb") as source, open(partial, "wb") as sink:
                shutil.copyfileobj(source, sink)
        except (EOFError, gzip.BadGzipFile, zlib.error) as err:  # a truncated or damaged download
            partial.unlink(missing_ok=True)
            raise ValueError(f"{archive} is not a whole gzip file ({err}); download it again") from None
        os.replace(partial, unpacked)
    return target.parent.parent


def _cifar(name: str, root: Path, download: bool, augment: str, cutout: int) -> DataSplits:
    from torchvision import datasets

    cls, num_classes = (datasets.CIFAR10, 10) if name == "cifar10" else (datasets.CIFAR100, 100)
    train_tf, test_tf = _transforms(name, True, augment, cutout), _transforms(name, False)
    if (root / "train").is_dir():
        train, test = _image_folders(root, ("test", "val"), train_tf, test_tf, size=32)
    else:
        try:
            train = cls(str(root), train=True, download=download, transform=train_tf)
            test = cls(str(root), train=False, download=False, transform=test_tf)
        except RuntimeError as err:
            raise ValueError(
                f"{name}: not found under {root}. Expected torchvision's layout ({root}/{cls.base_folder}) "
                f"or an image-folder tree ({root}/train/<class>/*.png and {root}/test/<class>/*.png); "
                "pass --download (needs internet) or --data-dir"
            ) from err
    if len(train.classes) != num_classes:
        raise ValueError(f"{name}: {root} has {len(train.classes)} classes, expected {num_classes}")
    return DataSplits(train, test, num_classes=num_classes, in_channels=3, image_size=32, stats=_STATS[name])


def _imagenet(root: Path) -> DataSplits:
    train, test = _image_folders(root, ("val",), _transforms("imagenet", True), _transforms("imagenet", False))
    return DataSplits(train, test, len(train.classes), in_channels=3, image_size=224, stats=_STATS["imagenet"])


def _tiny_imagenet(root: Path, augment: str, cutout: int) -> DataSplits:
    """Tiny-ImageNet-200: train/<wnid>/images/ (ImageFolder finds the images under each class folder), and
    the validation split as distributed (val/images/ with val_annotations.txt naming each image's class)
    or as class folders."""
    from torchvision.datasets import ImageFolder

    train_tf, test_tf = _transforms("tiny-imagenet", True, augment, cutout), _transforms("tiny-imagenet", False)
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        train, test = _image_folders(root, ("val",), train_tf, test_tf, size=64)
        return DataSplits(train, test, len(train.classes), 3, 64, stats=_STATS["tiny-imagenet"])
    if not (root / "train").is_dir():
        raise ValueError(f"tiny-imagenet: no {root}/train/<wnid>/images/ beside {annotations}")
    train = ImageFolder(str(root / "train"), train_tf, loader=functools.partial(read_image, size=64))
    samples = []
    for line in annotations.read_text().splitlines():
        name, wnid, *_ = line.split("\t")
        if wnid not in train.class_to_idx:
            raise ValueError(f"{annotations}: {name} is of class {wnid}, which {root}/train does not have")
        samples.append((str(root / "val" / "images" / name), train.class_to_idx[wnid]))
    return DataSplits(train, _Listed(samples, test_tf), len(train.classes), 3, 64, stats=_STATS["tiny-imagenet"])


class _Listed(Dataset):
    """Images from a list of (path, class index), read as ImageFolder reads them."""

    def __init__(self, samples: list[tuple[str, int]], transform):
        self.samples, self.transform = samples, transform
        self.targets = [c for _, c in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, target = self.samples[i]
        return self.transform(read_image(path, size=64)), target


def _image_folders(root: Path, test_names: tuple[str, ...], train_tf, test_tf, size: int | None = None):
    """ImageFolder train and test splits of the tree at `root`; with `size`, every image must be size x size:
    the first of each class is checked now (a tree of another size is refused before any work), each one
    as it is read."""
    from torchvision.datasets import ImageFolder

    test_dir = next((root / n for n in test_names if (root / n).is_dir()), None)
    layout = (
        f"{root}/train/<class>/<image> and {root}/{test_names[0]}/<class>/<image> "
        "(one sub-folder per class, the same classes in both)"
    )
    if not (root / "train").is_dir() or test_dir is None:
        raise ValueError(f"no image-folder tree at {root}: expected {layout}")
    try:
        train, test = (
            ImageFolder(str(d), tf, loader=functools.partial(read_image, size=size))
            for d, tf in ((root / "train", train_tf), (test_dir, test_tf))
        )
    except (FileNotFoundError, RuntimeError) as err:
        raise ValueError(f"malformed image-folder tree at {root} ({err}); expected {layout}") from err
    if train.classes != test.classes:
        raise ValueError(f"{root}: train and {test_dir.name} have different class folders; expected {layout}")
    for split in (train, test) if size is not None else ():
        firsts = {c: path for path, c in reversed(split.samples)}  # the first image of each class
        for path in firsts.values():
            split.loader(path)
    return _each_file_once(train), _each_file_once(test)


def _each_file_once(folder):
    """An ImageFolder whose files reached again through symbolic links (a link back to a parent folder is
    walked until the OS stops it) are kept once, with a warning."""
    seen, kept = set(), []
    for path, target in folder.samples:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            kept.append((path, target))
    if len(kept) < len(folder.samples):
        warnings.warn(
            f"{folder.root}: {len(folder.samples) - len(kept)} image paths lead through symbolic links to files "
            f"already found; each of the {len(kept)} files is used once",
            stacklevel=3,
        )
        folder.samples = folder.imgs = kept
        folder.targets = [t for _, t in kept]
    return folder


def read_image(path: str, size: int | None = None):
    """torchvision's PIL loader (RGB), with a one-line error naming the file that cannot be read, or that is
    not `size` x `size` where the data set's images all are (its transforms crop, they do not resize). 16-bit
    greyscale (PIL's "I;16" and "I" modes) is scaled to 8 bits first: PIL's own RGB conversion clips every
    level above 255, which turns such an image white."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            if size is not None and image.size != (size, size):
                raise ValueError(f"{path} is {image.size[0]}x{image.size[1]}; the images of this data set are "
                                 f"{size}x{size} (its transforms do not resize): resize or remove it")  # fmt: skip
            if image.mode.startswith("I;16") or image.mode == "I":
                levels = np.asarray(image, dtype=np.float64)
                if image.mode != "I" or levels.max() > 255:  # an "I" image may hold 8-bit levels
                    levels = levels / 257.0  # 65535 -> 255
                image = Image.fromarray(np.clip(np.rint(levels), 0, 255).astype(np.uint8), "L")
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path} is not a readable image ({type(err).__name__}): delete or replace it") from None


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
    return DataSplits(
        train=TensorDataset(images[train_idx], labels[train_idx]),
        test=TensorDataset(images[test_idx], labels[test_idx]),
        num_classes=10,
        in_channels=1,
        image_size=8,
        stats=((mean.item(),), (std.item(),)),
    )


class Reconstruction(Dataset):
    """(image as the network takes it, the same image in [0, 1], flattened): an autoencoder's input and
    target, the normalisation `stats` undone for the target."""

    def __init__(self, images: Dataset, stats: tuple[tuple[float, ...], tuple[float, ...]]):
        self.images = images
        self.mean, self.std = (torch.tensor(v, dtype=torch.float32).view(-1, 1, 1) for v in stats)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        x, _ = self.images[i]
        return x, (x * self.std + self.mean).clamp(0, 1).flatten()


def reconstruction(splits: DataSplits) -> DataSplits:
    """The splits as an image-reconstruction task (ASGL Table 5): each image is its own target, and
    `num_classes` is the number of values per image (the autoencoder's output size)."""
    if splits.stats is None:
        raise ValueError("this data set records no normalisation to undo: reconstruction takes image data sets")
    pixels = splits.in_channels * splits.image_size**2
    train, test = (Reconstruction(d, splits.stats) for d in (splits.train, splits.test))
    return dataclasses.replace(splits, train=train, test=test, num_classes=pixels)


def spread_subset(dataset: Dataset, n: int | None) -> Dataset:
    """`n` samples spread evenly over `dataset` (every len/n-th one): a quick evaluation set that keeps
    every class, where the first n samples of a class-sorted folder tree would hold only the first few."""
    if n is None or n >= len(dataset):
        return dataset
    if n < 1:
        raise ValueError(f"a subset needs at least one sample, got {n}")
    return Subset(dataset, torch.linspace(0, len(dataset) - 1, n).round().long().tolist())


def hold_out(splits: DataSplits, n: int, seed: int = 0) -> tuple[DataSplits, Dataset]:
    """The training split less `n` images drawn at random (from `seed`; the same n for every caller), and
    those n images read as the test split is read (no augmentation): a held-out part of the training data
    to choose a setting on, never the test set."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n < len(splits.train):
        raise ValueError(f"hold out 1 to {len(splits.train) - 1} training images (the training split has "
                         f"{len(splits.train)}), got {n!r}")  # fmt: skip
    order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(seed)).tolist()
    kept, held = sorted(order[n:]), sorted(order[:n])
    unaugmented = splits.train
    if hasattr(splits.train, "transform") and hasattr(splits.test, "transform"):
        unaugmented = copy.copy(splits.train)  # shares the file list or the arrays; only the transform differs
        unaugmented.transform = splits.test.transform
    return dataclasses.replace(splits, train=Subset(splits.train, kept)), Subset(unaugmented, held)


class DeviceLoader:
    """A small image data set held whole on the device as uint8 and batched there, with the standard
    CIFAR augmentation (random crop from a zero-padded image, horizontal flip) and normalisation done
    on the device: per-image PIL transforms in worker processes cannot feed a GPU at CIFAR sizes
    (docs/PERFORMANCE.md). The batches of (seed, epoch) are fixed, as with `DataSplits.loaders`;
    under torch.distributed each process takes every world-size-th sample of the epoch's permutation.

    images: uint8 [N, C, H, W] (or [N, H, W, C] with channels_last_input=True); labels: [N].
    train=False gives ordered, unaugmented batches of every sample (sharded without padding).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean,
        std,
        device: torch.device | str,
        train: bool = True,
        seed: int = 0,
        padding: int = 4,
        flip: bool = True,
        channels_last_input: bool = False,
    ):
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"DeviceLoader needs uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if channels_last_input:
            images = images.permute(0, 3, 1, 2)
        self.device = torch.device(device)
        self.images = images.contiguous().to(self.device)
        self.labels = torch.as_tensor(labels, dtype=torch.long).to(self.device)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255
        self.batch_size, self.train, self.seed, self.epoch = batch_size, train, seed, 0
        self.padding, self.flip = (padding, flip) if train else (0, False)
        self.rank, self.world = rank(), world_size()

    @classmethod
    def from_dataset(cls, dataset: Dataset, batch_size: int, name: str, device, train: bool = True, seed: int = 0):
        """From torchvision's CIFAR10/100 or MNIST classes (images in memory) or an ImageFolder of
        equal-sized images (decoded once), normalised with the statistics of data set `name`."""
        import numpy as np

        indices = None
        if isinstance(dataset, Subset):  # a part of a data set (hold_out): its images only
            dataset, indices = dataset.dataset, list(dataset.indices)
        if hasattr(dataset, "data") and hasattr(dataset, "targets"):
            images, targets = torch.as_tensor(dataset.data), dataset.targets
        elif hasattr(dataset, "samples") and hasattr(dataset, "loader"):
            images = torch.from_numpy(np.stack([np.asarray(dataset.loader(path)) for path, _ in dataset.samples]))
            targets = [label for _, label in dataset.samples]
        else:
            raise ValueError(
                f"DeviceLoader cannot read the images of a {type(dataset).__name__}: it takes "
                "torchvision's CIFAR10/100 and MNIST classes or an ImageFolder"
            )
        if indices is not None:
            images, targets = images[indices], torch.as_tensor(targets)[indices]
        images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
        padding = 4 if images.shape[-1] == 32 else 0  # the standard crop is a CIFAR augmentation
        return cls(
            images,
            torch.as_tensor(targets),
            batch_size,
            *_STATS[name],
            device,
            train=train,
            seed=seed,
            padding=padding,
            flip=padding > 0,
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        n = len(self.labels)
        if not self.train:
            return torch.arange(self.rank, n, self.world, device=self.device)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=generator)[: n - n % self.world][self.rank :: self.world]
        return order.to(self.device)

    def __len__(self) -> int:
        n = len(self.labels)
        if self.train:
            return (n - n % self.world) // self.world // self.batch_size
        return -(-len(range(self.rank, n, self.world)) // self.batch_size)

    def __iter__(self):
        order = self._order()
        generator = torch.Generator(self.device).manual_seed(self.seed * 100_003 + self.epoch + 1)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[index]
            if self.padding or self.flip:
                x = self._augment(x, generator)
            yield (x.float() - self.mean) / self.std, self.labels[index]

    def _augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop of the zero-padded image and a random horizontal flip, as one gather."""
        b, c, h, w = x.shape
        pad = self.padding
        x = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy, dx = (
            torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=self.device)
            if pad
            else torch.zeros(2, b, dtype=torch.long, device=self.device)
        )
        rows = dy[:, None] + torch.arange(h, device=self.device)
        cols = dx[:, None] + torch.arange(w, device=self.device)
        if self.flip:
            flipped = torch.rand(b, generator=generator, device=self.device) < 0.5
            cols = torch.where(flipped[:, None], cols.flip(1), cols)
        batch = torch.arange(b, device=self.device)[:, None, None, None]
        channel = torch.arange(c, device=self.device)[None, :, None, None]
        return x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
