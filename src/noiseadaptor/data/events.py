"""Event (neuromorphic) data sets as time-major frame tensors for direct SNN training.

How it works: docs/internals.md, "Event data"."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from ..checks import positive_int
from . import DataSplits, default_data_dir

EVENT_DATASETS = ("dvs-cifar10", "shd", "dvs-gesture")
_ALIASES = {"cifar10-dvs": "dvs-cifar10", "cifar10dvs": "dvs-cifar10", "dvs-cifar-10": "dvs-cifar10"}
_CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_INSTALL = "pip install noiseadaptor[events]"


def events_to_frames(
    events: np.ndarray,
    T: int,
    sensor_size: Sequence[int],
    split_by: str = "time",
    duration: float | None = None,
    size: int | Sequence[int] | None = None,
) -> np.ndarray:
    """Accumulate one recording's events into T frames of event counts.

    events: a structured numpy array with fields x, y, t, p (vision) or x, t, p (audio), in any order.
    sensor_size: tonic's convention, (W, H, P) for vision and (X, 1, P) for audio. A one-polarity sensor
        (P = 1) puts every event in polarity 0, whatever its p (tonic's SHD has p = 1 throughout).
    split_by: "time" (T equal intervals of [first, last event], every event kept) or "number" (T equal
        shares of the events in time order, every event kept).
    duration: with split_by="time", bin [0, duration) instead of each recording's own span (a fixed time
        axis across recordings, in the unit of t); events at or after ``duration`` are dropped.
    size: downsample the spatial grid by scaling event coordinates, x' = floor(x * size / W) (sum-pooling
        with a nearest-neighbour footprint; counts are kept). An int is a square (H, W) for vision and the
        channel count for audio; a pair is (H, W).
    Returns float32 [T, P, H, W] for vision, [T, P, X] for audio.
    """
    positive_int(T, "T")
    if split_by not in ("time", "number"):
        raise ValueError(f"split_by must be 'time' or 'number', got {split_by!r}")
    if duration is not None and split_by != "time":
        raise ValueError("duration applies to split_by='time' only")
    if duration is not None and not duration > 0:
        raise ValueError(f"duration must be positive, got {duration!r}")
    names = events.dtype.names or ()
    missing = {"x", "t", "p"} - set(names)
    if missing:
        raise ValueError(f"events need fields x, t, p (and y for vision); missing {sorted(missing)} in {names}")
    vision = "y" in names
    width, height, polarities = (int(s) for s in sensor_size)
    out_h, out_w = _output_grid(size, vision, height, width)

    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64) if vision else np.zeros_like(x)
    p = np.zeros_like(x) if polarities == 1 else events["p"].astype(np.int64)
    for name, values, bound in (("x", x, width), ("y", y, height), ("p", p, polarities)):
        if values.size and (values.min() < 0 or values.max() >= bound):
            raise ValueError(
                f"event {name} out of range [0, {bound}) for sensor_size {tuple(sensor_size)}: "
                f"min {values.min()}, max {values.max()}"
            )
    if out_w != width:
        x = x * out_w // width
    if out_h != height:
        y = y * out_h // height

    b, keep = _time_bins(events["t"], T, split_by, duration)
    frames = np.zeros((T, polarities, out_h, out_w), dtype=np.float32)
    np.add.at(frames, (b, p[keep], y[keep], x[keep]), 1.0)
    return frames if vision else frames[:, :, 0, :]


def _output_grid(size, vision: bool, height: int, width: int) -> tuple[int, int]:
    if size is None:
        return height, width
    if isinstance(size, int):
        out = (size, size) if vision else (1, size)
    else:
        if not vision:
            raise ValueError("audio events (no y field) take an int size: the number of channels")
        out = tuple(int(s) for s in size)
    if len(out) != 2 or not all(0 < o <= s for o, s in zip(out, (height, width))):
        raise ValueError(f"size {size!r} must be positive and at most the sensor's (H={height}, W={width})")
    return out


def _time_bins(t: np.ndarray, T: int, split_by: str, duration: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The frame index of each kept event, and which events are kept (a boolean mask)."""
    n = len(t)
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return np.zeros(0, dtype=np.int64), keep
    if split_by == "number":
        order = np.argsort(t, kind="stable")
        bins = np.empty(n, dtype=np.int64)
        bins[order] = np.arange(n, dtype=np.int64) * T // n  # shares of n // T or n // T + 1 events
        return bins, keep
    if duration is not None:
        tf = t.astype(np.float64)
        keep = (tf >= 0) & (tf < duration)
        return np.floor(tf[keep] * T / duration).astype(np.int64), keep
    if np.issubdtype(t.dtype, np.integer):  # exact integer arithmetic (microsecond time stamps)
        ti = t.astype(np.int64)
        start, span = ti.min(), int(ti.max() - ti.min())
        bins = (ti - start) * T // max(span, 1)
    else:
        tf = t.astype(np.float64)
        start, span = tf.min(), float(tf.max() - tf.min())
        bins = np.floor((tf - start) / span * T).astype(np.int64) if span > 0 else np.zeros(n, dtype=np.int64)
    return np.minimum(bins, T - 1), keep  # the last event closes the last interval


def start_clip(events: np.ndarray, window: float, start_fraction: float) -> np.ndarray:
    """RCS (random clip start; Yao et al. 2021, used by ASGL A.4): the events of [s, s + window) with
    s = first + start_fraction * max(span - window, 0), their times shifted so that s is 0."""
    if not 0 <= start_fraction <= 1:
        raise ValueError(f"start_fraction must be in [0, 1], got {start_fraction!r}")
    t = events["t"].astype(np.float64)
    if not len(t):
        return events
    first, span = t.min(), t.max() - t.min()
    start = first + start_fraction * max(span - window, 0.0)
    kept = events[(t >= start) & (t < start + window)].copy()
    kept["t"] = (kept["t"].astype(np.float64) - start).astype(kept["t"].dtype)
    return kept


class FramesDataset(Dataset):
    """Wraps a tonic-style data set (items ``(events, label)``, events a structured numpy array with x, y,
    t, p or x, t, p) and returns ``(frames, label)`` with float32 frames [T, P, H, W] ([T, P, X] for audio;
    [T, features] with ``flatten=True``). Binning is `events_to_frames` (see there for split_by, duration
    and size); ``transform`` (optional) is applied to the frame tensor, e.g. for augmentation. With
    ``window``, each recording is first cut to one window (`start_clip`) binned over [0, window): from a
    start drawn with torch's RNG when ``random_start`` (training), else from its first event."""

    def __init__(
        self,
        events_dataset,
        T: int,
        sensor_size: Sequence[int],
        split_by: str = "time",
        duration: float | None = None,
        size: int | Sequence[int] | None = None,
        flatten: bool = False,
        transform: Callable[[Tensor], Tensor] | None = None,
        window: float | None = None,
        random_start: bool = False,
    ):
        positive_int(T, "T")
        if window is not None and (not window > 0 or split_by != "time" or duration is not None):
            raise ValueError("window must be positive, with split_by='time' and no duration (the window is one)")
        if split_by not in ("time", "number"):
            raise ValueError(f"split_by must be 'time' or 'number', got {split_by!r}")
        self.events_dataset, self.T, self.sensor_size = events_dataset, T, tuple(int(s) for s in sensor_size)
        self.split_by, self.duration, self.size = split_by, duration, size
        self.flatten, self.transform = flatten, transform
        self.window, self.random_start = window, random_start

    def __len__(self) -> int:
        return len(self.events_dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        events, label = self.events_dataset[index]
        duration = self.duration
        if self.window is not None:
            events = start_clip(events, self.window, torch.rand(()).item() if self.random_start else 0.0)
            duration = self.window
        frames = events_to_frames(events, self.T, self.sensor_size, self.split_by, duration, self.size)
        frames = torch.from_numpy(frames)
        if self.flatten:
            frames = frames.reshape(self.T, -1)
        if self.transform is not None:
            frames = self.transform(frames)
        return frames, int(label)


def split_per_class(
    targets: Sequence[int], keys: Sequence | None = None, test_fraction: float = 0.1
) -> tuple[list[int], list[int]]:
    """Deterministic train/test indices for a data set without an official split: within each class, items
    ordered by ``keys`` (e.g. file paths; index order when None), the last ``round(n * test_fraction)``
    are the test set. Returns (train indices, test indices), each in ascending order."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    targets = [int(t) for t in targets]
    keys = list(range(len(targets))) if keys is None else [str(k) for k in keys]
    if len(keys) != len(targets):
        raise ValueError(f"{len(keys)} keys for {len(targets)} targets")
    train, test = [], []
    for label in sorted(set(targets)):
        members = sorted((i for i, t in enumerate(targets) if t == label), key=lambda i: keys[i])
        n_test = int(round(len(members) * test_fraction))
        train += members[: len(members) - n_test]
        test += members[len(members) - n_test :]
    return sorted(train), sorted(test)


def event_dataset(
    name: str,
    data_dir: str | Path | None = None,
    T: int = 10,
    download: bool = False,
    size: int | None = None,
    split_by: str | None = None,
    duration: float | None = None,
    test_fraction: float = 0.1,
    train_transform: Callable[[Tensor], Tensor] | None = None,
    bin_ms: float = 25.0,
) -> DataSplits:
    """Load an event data set by name (see the module docstring for layouts) as T-frame samples.

    size: dvs-cifar10 frame side (default 48; 128 = full resolution); shd channel count (default 700).
    split_by: "time" or "number" (default: "number" for dvs-cifar10, "time" for shd).
    duration: a fixed time axis [0, duration) in microseconds instead of each recording's span (shd: e.g.
        1e6 for one second). test_fraction: dvs-cifar10's per-class test share (default 0.1, i.e. 9:1).
    train_transform: applied to the training frames only (augmentation). bin_ms: dvs-gesture's slice length.
    DataSplits.image_size is the frame side (dvs-cifar10) or channel count (shd); in_channels the polarities.
    Raises ValueError naming the expected layout when the files are missing (and download is False), and
    ImportError when tonic (or aedat, for dvs-cifar10) is not installed.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in EVENT_DATASETS:
        raise ValueError(f"unknown event data set {name!r}; available: {', '.join(EVENT_DATASETS)}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if key == "dvs-cifar10":
        return _cifar10dvs(
            root,
            T,
            download,
            48 if size is None else size,
            split_by or "number",
            duration,
            test_fraction,
            train_transform,
        )
    if key == "dvs-gesture":
        return _dvs_gesture(root, T, download, 128 if size is None else size, bin_ms, train_transform)
    return _shd(root, T, download, 700 if size is None else size, split_by or "time", duration, train_transform)


def _import_tonic(*extra: str):
    try:
        import tonic

        for module in extra:
            __import__(module)
    except ImportError as err:
        raise ImportError(
            f"event data sets need tonic{' and ' + ', '.join(extra) if extra else ''} "
            f"({err}); install them with `{_INSTALL}`"
        ) from err
    return tonic


def _cifar10dvs(
    root: Path,
    T: int,
    download: bool,
    size: int,
    split_by: str,
    duration: float | None,
    test_fraction: float,
    train_transform,
) -> DataSplits:
    folder = root / "CIFAR10DVS"
    if not download:
        n_files = len(list(folder.glob("**/*.aedat4"))) if folder.is_dir() else 0
        has_zip = (folder / "CIFAR10DVS.zip").is_file()
        if n_files < 1000 or not has_zip:
            found = (
                f"found {n_files} .aedat4 files" + ("" if has_zip else " and no CIFAR10DVS.zip")
                if folder.is_dir()
                else f"{folder} does not exist"
            )
            raise ValueError(
                f"dvs-cifar10: not found under {root} ({found}). Expected tonic's layout "
                f"{folder}/CIFAR10DVS.zip and the extracted {folder}/<class>/*.aedat4 "
                f"(<class> = {', '.join(_CIFAR10DVS_CLASSES)}; tonic needs the archive present too, or it downloads "
                f"again). Install the reader with `{_INSTALL}` (tonic and aedat) and pass download=True (--download, "
                "needs internet) or a data dir that contains CIFAR10DVS/"
            )
    tonic = _import_tonic("aedat")
    base = tonic.datasets.CIFAR10DVS(save_to=str(root))
    sensor = tuple(base.sensor_size)  # (128, 128, 2)
    train_idx, test_idx = split_per_class(base.targets, keys=getattr(base, "data", None), test_fraction=test_fraction)
    common = dict(T=T, sensor_size=sensor, split_by=split_by, duration=duration, size=size)
    train = Subset(FramesDataset(base, transform=train_transform, **common), train_idx)
    test = Subset(FramesDataset(base, **common), test_idx)
    return DataSplits(train, test, num_classes=10, in_channels=sensor[2], image_size=size)


def _dvs_gesture(root: Path, T: int, download: bool, size: int, bin_ms: float, train_transform) -> DataSplits:
    folder = root / "DVSGesture"
    if not download:
        parts = ("ibmGestureTrain", "ibmGestureTest")
        missing = [f"{p}.tar.gz" for p in parts if not (folder / f"{p}.tar.gz").is_file()]
        missing += [f"{p}/user*/*.npy" for p in parts if not any((folder / p).glob("user*/*.npy"))]
        if missing:
            raise ValueError(
                f"dvs-gesture: not found under {root} (missing {', '.join(missing)} in {folder}). Expected tonic's "
                f"layout {folder}/ibmGestureTrain.tar.gz, ibmGestureTest.tar.gz and the extracted "
                f"{folder}/ibmGestureTrain/user*_*/<class>.npy (and ibmGestureTest/). Install the reader with "
                f"`{_INSTALL}` and pass download=True (--download, needs internet) or a data dir that contains "
                "DVSGesture/"
            )
    window = T * bin_ms * 1000.0  # microseconds
    train, test, sensor = _official_split(
        _import_tonic().datasets.DVSGesture, root, train_transform, True, T=T, split_by="time", size=size, window=window
    )  # sensor (128, 128, 2)
    return DataSplits(train, test, num_classes=11, in_channels=sensor[2], image_size=size)


def _official_split(dataset_class, root: Path, train_transform, random_start: bool = False, **frames):
    """(train, test, sensor size) of a tonic data set with an official split, as FramesDatasets: the training
    one with `train_transform` and, with `random_start`, RCS windows."""
    train_base, test_base = (dataset_class(save_to=str(root), train=part) for part in (True, False))
    sensor = tuple(train_base.sensor_size)
    train = FramesDataset(
        train_base, sensor_size=sensor, transform=train_transform, random_start=random_start, **frames
    )
    test = FramesDataset(test_base, sensor_size=sensor, **frames)
    return train, test, sensor


def _shd(
    root: Path, T: int, download: bool, size: int, split_by: str, duration: float | None, train_transform
) -> DataSplits:
    folder = root / "SHD"
    if not download:
        missing = [
            f
            for f in ("shd_train.h5", "shd_test.h5", "shd_train.h5.zip", "shd_test.h5.zip")
            if not (folder / f).is_file()
        ]
        if missing:
            hint = ""
            if all(f.endswith(".zip") for f in missing):
                hint = (
                    " The .h5 files are there but tonic also checks for the archives (it downloads again "
                    "without them): put them back, or create empty files with those names."
                )
            raise ValueError(
                f"shd: not found under {root} (missing {', '.join(missing)} in {folder}). Expected tonic's layout "
                f"{folder}/shd_train.h5, {folder}/shd_test.h5 and their archives shd_train.h5.zip, shd_test.h5.zip."
                f"{hint} Install the reader with `{_INSTALL}` and pass download=True (--download, needs internet) "
                "or a data dir that contains SHD/"
            )
    train, test, sensor = _official_split(
        _import_tonic().datasets.SHD,
        root,
        train_transform,
        T=T,
        split_by=split_by,
        duration=duration,
        size=size,
        flatten=True,
    )  # fmt: skip  (sensor (700, 1, 1))
    return DataSplits(train, test, num_classes=20, in_channels=sensor[2], image_size=size)
