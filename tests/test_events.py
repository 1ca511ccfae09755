import importlib.util

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from noiseadaptor.ann.models import create_model
from noiseadaptor.data.events import FramesDataset, event_dataset, events_to_frames, split_per_class
from noiseadaptor.snn.lif import DirectConfig, to_direct_snn

VISION = np.dtype([("t", np.uint64), ("x", np.uint16), ("y", np.uint16), ("p", bool)])  # CIFAR10DVS's
AUDIO = np.dtype([("t", int), ("x", int), ("p", int)])  # tonic SHD's


def random_events(rng, n, sensor=(16, 12, 2), dtype=VISION):
    events = np.zeros(n, dtype=dtype)
    events["t"] = np.sort(rng.integers(1_000, 50_000, n))
    events["x"] = rng.integers(0, sensor[0], n)
    if "y" in dtype.names:
        events["y"] = rng.integers(0, sensor[1], n)
    events["p"] = rng.integers(0, sensor[2], n) if sensor[2] > 1 else 1
    return events


class TinyEvents:
    """A tonic-style data set: (structured events, label) items."""

    def __init__(self, n_samples=6, sensor=(16, 12, 2), dtype=VISION, seed=0):
        rng = np.random.default_rng(seed)
        self.samples = [
            (random_events(rng, int(rng.integers(0, 400)) if i else 0, sensor, dtype), i % 3) for i in range(n_samples)
        ]  # sample 0 has no events

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


@pytest.mark.parametrize("split_by", ["time", "number"])
def test_frames_shape_and_event_counts_conserved(split_by):
    data = FramesDataset(TinyEvents(), T=5, sensor_size=(16, 12, 2), split_by=split_by)
    for (events, label), (frames, frame_label) in zip(data.events_dataset.samples, data):
        assert frames.shape == (5, 2, 12, 16) and frames.dtype == torch.float32 and frame_label == label
        assert frames.sum().item() == len(events)
        for polarity in (0, 1):  # and per polarity, per pixel
            assert frames[:, polarity].sum().item() == (events["p"] == polarity).sum()
        if len(events):
            e = events[0]
            assert (
                frames[:, int(e["p"]), e["y"], e["x"]].sum()
                == ((events["x"] == e["x"]) & (events["y"] == e["y"]) & (events["p"] == e["p"])).sum()
            )


def test_time_binning_by_hand():
    events = np.zeros(8, dtype=VISION)
    events["t"] = [100, 101, 102, 103, 104, 105, 106, 107]  # span 7: bins [100,101] [102,103] [104,105] [106,107]
    events["x"] = [0, 1, 2, 3, 0, 1, 2, 3]
    events["p"] = [0, 1, 0, 1, 0, 1, 0, 1]
    frames = events_to_frames(events, T=4, sensor_size=(4, 1, 2))
    assert frames.shape == (4, 2, 1, 4)
    assert frames.sum(axis=(1, 2, 3)).tolist() == [2, 2, 2, 2]
    assert frames[0, 0, 0].tolist() == [1, 0, 0, 0] and frames[0, 1, 0].tolist() == [0, 1, 0, 0]
    assert frames[3, 0, 0].tolist() == [0, 0, 1, 0] and frames[3, 1, 0].tolist() == [0, 0, 0, 1]
    # float times, unsorted input, uneven bins: t in [0, 10], T=2: [0, 5) and [5, 10]
    floats = np.zeros(5, dtype=[("t", float), ("x", int), ("p", int)])
    floats["t"], floats["x"], floats["p"] = [10.0, 0.0, 4.9, 5.0, 7.0], [0, 1, 2, 3, 4], 0
    audio = events_to_frames(floats, T=2, sensor_size=(5, 1, 1))
    assert audio.shape == (2, 1, 5)
    assert audio[0, 0].tolist() == [0, 1, 1, 0, 0] and audio[1, 0].tolist() == [1, 0, 0, 1, 1]
    # split by number: 5 events into 2 frames in time order, 3 then 2
    by_number = events_to_frames(floats, T=2, sensor_size=(5, 1, 1), split_by="number")
    assert by_number[0, 0].tolist() == [0, 1, 1, 1, 0] and by_number[1, 0].tolist() == [1, 0, 0, 0, 1]
    # a fixed axis [0, 8): bins [0, 4) [4, 8); t = 10 is dropped
    fixed = events_to_frames(floats, T=2, sensor_size=(5, 1, 1), duration=8.0)
    assert fixed[0, 0].tolist() == [0, 1, 0, 0, 0] and fixed[1, 0].tolist() == [0, 0, 1, 1, 1]
    same = events.copy()
    same["t"] = 5
    assert events_to_frames(same, T=3, sensor_size=(4, 1, 2))[0].sum() == 8  # zero span: all in frame 0


def test_downsample_and_audio_layout():
    data = FramesDataset(TinyEvents(sensor=(16, 12, 2)), T=3, sensor_size=(16, 12, 2), size=(6, 8))
    for (events, _), (frames, _) in zip(data.events_dataset.samples, data):
        assert frames.shape == (3, 2, 6, 8) and frames.sum().item() == len(events)
    square = FramesDataset(TinyEvents(sensor=(16, 16, 2)), T=3, sensor_size=(16, 16, 2), size=4)
    assert square[1][0].shape == (3, 2, 4, 4)
    audio = TinyEvents(sensor=(70, 1, 1), dtype=AUDIO)  # SHD-like: p = 1 on a one-polarity sensor
    flat = FramesDataset(audio, T=4, sensor_size=(70, 1, 1), flatten=True)
    for (events, _), (frames, _) in zip(audio.samples, flat):
        assert frames.shape == (4, 70) and frames.sum().item() == len(events)
    fewer = FramesDataset(audio, T=4, sensor_size=(70, 1, 1), size=14, flatten=True)
    assert fewer[1][0].shape == (4, 14) and fewer[1][0].sum().item() == len(audio[1][0])


def test_bad_events_are_rejected():
    events = random_events(np.random.default_rng(0), 10, sensor=(16, 12, 2))
    with pytest.raises(ValueError, match="x out of range"):
        events_to_frames(events, 4, sensor_size=(8, 12, 2))
    with pytest.raises(ValueError, match="missing"):
        events_to_frames(np.zeros(3, dtype=[("t", int), ("x", int)]), 4, sensor_size=(4, 1, 1))
    with pytest.raises(ValueError, match="split_by"):
        FramesDataset(TinyEvents(), 4, (16, 12, 2), split_by="count")
    with pytest.raises(ValueError, match="positive integer"):
        events_to_frames(events, 0, sensor_size=(16, 12, 2))


def test_direct_network_consumes_batched_frames():
    torch.manual_seed(0)
    data = FramesDataset(TinyEvents(sensor=(16, 16, 2)), T=4, sensor_size=(16, 16, 2))
    frames, labels = next(iter(DataLoader(data, batch_size=3)))
    assert frames.shape == (3, 4, 2, 16, 16) and labels.tolist() == [0, 1, 2]  # [B, T, C, H, W]
    snn = to_direct_snn(create_model("small-cnn", 3, 2, width=4), DirectConfig(time_steps=4), static_input=False)
    out = snn(frames)
    assert out.shape == (3, 3)
    out.sum().backward()


def test_split_per_class_is_deterministic_nine_to_one():
    targets = [i % 2 for i in range(40)]
    keys = [f"f{(7 * i) % 40:02d}" for i in range(40)]
    train, test = split_per_class(targets, keys)
    assert len(train) == 36 and len(test) == 4 and not set(train) & set(test)
    assert sorted(targets[i] for i in test) == [0, 0, 1, 1]
    assert (train, test) == split_per_class(targets, keys)
    assert all(keys[i] > max(keys[j] for j in train if targets[j] == targets[i]) for i in test)


def test_missing_files_error_names_the_layout(tmp_path):
    with pytest.raises(ValueError, match=r"CIFAR10DVS/<class>/\*\.aedat4.*pip install noiseadaptor\[events\]"):
        event_dataset("dvs-cifar10", tmp_path, T=4)
    (tmp_path / "SHD").mkdir()
    for f in ("shd_train.h5", "shd_test.h5"):
        (tmp_path / "SHD" / f).touch()
    with pytest.raises(ValueError, match=r"missing shd_train\.h5\.zip, shd_test\.h5\.zip.*archives.*download=True"):
        event_dataset("shd", tmp_path, T=4)
    with pytest.raises(ValueError, match="unknown event data set"):
        event_dataset("n-mnist", tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("tonic") is not None, reason="tonic is installed")
def test_files_present_without_tonic_asks_to_install(tmp_path):
    folder = tmp_path / "SHD"
    folder.mkdir()
    for f in ("shd_train.h5", "shd_test.h5", "shd_train.h5.zip", "shd_test.h5.zip"):
        (folder / f).touch()
    with pytest.raises(ImportError, match=r"pip install noiseadaptor\[events\]"):
        event_dataset("shd", tmp_path, T=4)


@pytest.mark.skipif(importlib.util.find_spec("tonic") is None, reason="tonic not installed")
def test_binning_matches_tonic_to_frame_except_the_last_event():
    import tonic

    rng = np.random.default_rng(1)
    events = random_events(rng, 300, sensor=(16, 12, 2))
    events["t"] = np.concatenate([[0], np.sort(rng.integers(0, 4000, 298)), [4000]])  # span 4000 = 4 x 1000
    ours = events_to_frames(events, 4, (16, 12, 2))
    theirs = tonic.transforms.ToFrame(sensor_size=(16, 12, 2), n_time_bins=4)(events)
    last = np.zeros_like(ours)
    last[3, int(events["p"][-1]), events["y"][-1], events["x"][-1]] = 1  # tonic's windows [k*1000, (k+1)*1000) drop it
    assert theirs.shape == ours.shape and np.array_equal(ours - theirs, last)


needs_tonic = pytest.mark.skipif(
    importlib.util.find_spec("tonic") is None or importlib.util.find_spec("h5py") is None, reason="tonic not installed"
)


@needs_tonic
def test_shd_through_tonic_on_generated_files(tmp_path):
    import h5py

    folder = tmp_path / "SHD"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("test", 3)):
        with h5py.File(folder / f"shd_{split}.h5", "w") as f:  # the real files' structure, in seconds
            vlen_f, vlen_u = h5py.vlen_dtype(np.float32), h5py.vlen_dtype(np.uint16)
            times = f.create_dataset("spikes/times", (n,), dtype=vlen_f)
            units = f.create_dataset("spikes/units", (n,), dtype=vlen_u)
            for i in range(n):
                k = int(rng.integers(5, 50))
                times[i], units[i] = np.sort(rng.uniform(0, 0.9, k)).astype(np.float32), rng.integers(0, 700, k)
            f["labels"] = rng.integers(0, 20, n).astype(np.uint16)
            f["extra/keys"] = np.array([b"k%d" % i for i in range(20)])
            f["extra/speaker"] = np.zeros(n, dtype=np.uint16)
        (folder / f"shd_{split}.h5.zip").touch()  # tonic checks for the archive
    splits = event_dataset("shd", tmp_path, T=6)
    shape = (len(splits.train), len(splits.test), splits.num_classes, splits.in_channels, splits.image_size)
    assert shape == (5, 3, 20, 1, 700)
    frames, label = splits.test[2]
    with h5py.File(folder / "shd_test.h5") as f:
        assert frames.shape == (6, 700) and frames.sum() == len(f["spikes/times"][2]) and label == f["labels"][2]
    fixed = event_dataset("shd", tmp_path, T=4, size=140, duration=1e6)  # microseconds, as tonic gives them
    assert fixed.train[0][0].shape == (4, 140) and fixed.image_size == 140


@needs_tonic
@pytest.mark.skipif(importlib.util.find_spec("aedat") is None, reason="aedat (DVS-CIFAR10's file reader) not installed")
def test_dvs_cifar10_through_tonic_on_generated_files(tmp_path, monkeypatch):
    import tonic.datasets.cifar10dvs as cifar10dvs

    folder = tmp_path / "CIFAR10DVS"
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        for i in range(100):
            (folder / name / f"cifar10_{name}_{i}.aedat4").write_text(f"{c} {i}")
    (folder / "CIFAR10DVS.zip").touch()

    def read_aedat4(path):  # stands in for the aedat decoder: CIFAR10DVS's fields, 128x128
        c, i = map(int, open(path).read().split())
        events = random_events(np.random.default_rng(1000 * c + i), 20 + c, sensor=(128, 128, 2))
        return events.astype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)])

    monkeypatch.setattr(cifar10dvs, "read_aedat4", read_aedat4)
    splits = event_dataset("dvs-cifar10", tmp_path, T=5)
    shape = (len(splits.train), len(splits.test), splits.num_classes, splits.in_channels, splits.image_size)
    assert shape == (900, 100, 10, 2, 48)
    test_labels = [splits.test.dataset.events_dataset.targets[i] for i in splits.test.indices]
    assert sorted(test_labels) == sorted(list(range(10)) * 10)
    frames, label = splits.test[0]
    assert frames.shape == (5, 2, 48, 48) and frames.sum() == 20 + label
    assert event_dataset("dvs-cifar10", tmp_path, T=2, size=128).train[0][0].shape == (2, 2, 128, 128)


def test_train_command_routes_event_data_and_explains_what_is_missing(tmp_path, capsys):
    from noiseadaptor.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["train", "--dataset", "shd", "--method", "na", "--out", str(tmp_path / "a")])
    assert stop.value.code == 2 and "direct method" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "train",
                "--dataset",
                "dvs-cifar10",
                "--method",
                "asgl",
                "--data-dir",
                str(tmp_path),
                "--out",
                str(tmp_path / "b"),
            ]
        )
    assert stop.value.code == 2 and "CIFAR10DVS" in capsys.readouterr().err


def test_random_clip_start_is_deterministic_per_seed_and_keeps_one_window():
    # RCS (ASGL A.4): a window of T slices from a random start in training, from the first event in testing
    from noiseadaptor.data.events import start_clip

    events = random_events(np.random.default_rng(0), 300)  # t in [1 ms, 50 ms)
    clip = start_clip(events, 10_000, 0.5)
    first, span = int(events["t"].min()), int(events["t"].max() - events["t"].min())
    start = first + 0.5 * (span - 10_000)
    inside = (events["t"] >= start) & (events["t"] < start + 10_000)
    assert len(clip) == inside.sum() and clip["t"].max() < 10_000
    train = FramesDataset(TinyEvents(3), T=4, sensor_size=(16, 12, 2), window=10_000, random_start=True)
    test = FramesDataset(TinyEvents(3), T=4, sensor_size=(16, 12, 2), window=10_000)

    def draw(seed):
        torch.manual_seed(seed)
        return torch.stack([train[i][0] for i in range(1, 3)])

    assert torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))  # per seed, and random
    assert torch.equal(test[1][0], test[1][0])  # the test set starts at each recording's first event
    assert test[1][0].sum() == (TinyEvents(3)[1][0]["t"] < TinyEvents(3)[1][0]["t"].min() + 10_000).sum()


@needs_tonic
def test_dvs_gesture_through_tonic_on_generated_files(tmp_path):
    import tonic

    folder = tmp_path / "DVSGesture"
    rng = np.random.default_rng(0)
    for part, users in (("ibmGestureTrain", 10), ("ibmGestureTest", 10)):
        (folder / f"{part}.tar.gz").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"{part}.tar.gz").touch()  # tonic checks for the archive
        for u in range(users):  # tonic wants at least 100 .npy files: 10 users x 11 classes
            d = folder / part / f"user{u + 1:02d}_fluorescent"
            d.mkdir(parents=True)
            for c in range(11):
                n = 200
                t_ms = np.sort(rng.uniform(0, 3000, n))  # a 3 s recording, in milliseconds as the files hold
                rows = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), t_ms], 1)
                np.save(d / f"{c}.npy", rows.astype(np.float64))
    assert tonic.datasets.DVSGesture.sensor_size == (128, 128, 2)
    splits = event_dataset("dvs-gesture", tmp_path, T=6, size=32)  # 6 slices of 25 ms: a 150 ms window
    assert (len(splits.train), len(splits.test), splits.num_classes, splits.in_channels) == (110, 110, 11, 2)
    frames, label = splits.test[0]
    assert frames.shape == (6, 2, 32, 32) and 0 < frames.sum() < 200 and 0 <= label < 11
    with pytest.raises(ValueError, match="ibmGestureTrain"):
        event_dataset("dvs-gesture", tmp_path / "empty", T=6)
