"""Data: spread test subsets, the on-device loader."""

import numpy as np
import pytest
import torch


def test_spread_subset_keeps_every_class_of_a_class_sorted_set():
    from torch.utils.data import TensorDataset

    from noiseadaptor.data import spread_subset

    labels = torch.arange(10).repeat_interleave(100)  # sorted by class, as an image-folder tree is
    subset = spread_subset(TensorDataset(torch.zeros(1000, 1), labels), 50)
    assert len(subset) == 50 and set(labels[subset.indices].tolist()) == set(range(10))
    with pytest.raises(ValueError, match="at least one"):
        spread_subset(TensorDataset(torch.zeros(3, 1)), 0)


def test_device_loader_augments_like_torchvision_and_repeats_per_epoch():
    from torchvision import transforms

    from noiseadaptor.data import DeviceLoader

    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(40)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    reference = transforms.Normalize(mean, std)(images.float() / 255)
    loader = DeviceLoader(images, labels, 16, mean, std, "cpu", train=True, seed=3)
    assert len(loader) == 2
    batches = [(x.clone(), y.clone()) for x, y in loader]
    for x, y in batches:
        assert x.shape == (16, 3, 32, 32) and len(set(y.tolist())) == 16
        for xi, yi in zip(x, y):  # a 32x32 window of the zero-padded image, maybe mirrored
            source = torch.nn.functional.pad(images[yi].float(), (4, 4, 4, 4))
            source = transforms.Normalize(mean, std)(source / 255)
            windows = [source[:, r : r + 32, c : c + 32] for r in range(9) for c in range(9)]
            assert any(torch.allclose(xi, w, atol=1e-5) or torch.allclose(xi, w.flip(-1), atol=1e-5) for w in windows)
    again = [(x, y) for x, y in loader]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    loader.set_epoch(1)
    assert not torch.equal(next(iter(loader))[1], batches[0][1])
    evaluation = DeviceLoader(images, labels, 16, mean, std, "cpu", train=False)
    x, y = torch.cat([b[0] for b in evaluation]), torch.cat([b[1] for b in evaluation])
    assert len(evaluation) == 3 and torch.equal(y, labels) and torch.allclose(x, reference, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(images.float(), labels, 16, mean, std, "cpu")


def test_tiny_imagenet_as_distributed_and_as_class_folders(tmp_path):
    # ASGL Table 8's data set: train/<wnid>/images/*.JPEG and val/images/ with val_annotations.txt
    import numpy as np
    from PIL import Image

    from noiseadaptor.data import get_dataset

    rng = np.random.default_rng(0)
    root = tmp_path / "tiny-imagenet-200"
    lines = []
    for wnid in ("n01443537", "n01629819"):
        (root / "train" / wnid / "images").mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
                root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG"
            )
    (root / "val" / "images").mkdir(parents=True)
    for i, wnid in enumerate(("n01629819", "n01443537", "n01629819")):
        image = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        image.save(root / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    splits = get_dataset("tiny-imagenet", root)
    assert (len(splits.train), len(splits.test), splits.num_classes, splits.image_size) == (4, 3, 2, 64)
    x, y = splits.test[0]
    assert x.shape == (3, 64, 64) and [splits.test[i][1] for i in range(3)] == [1, 0, 1]
    assert splits.train[0][0].shape == (3, 64, 64)  # random 64x64 crop with padding, flip
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn09999999\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match="n09999999"):
        get_dataset("tiny-imagenet", root)


def test_16_bit_greyscale_images_keep_their_levels(tmp_path):
    # PIL's RGB conversion clips 16-bit levels at 255: every pixel came out white
    from PIL import Image

    from noiseadaptor.data import read_image

    levels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 4  # 8-bit levels 0..252
    Image.fromarray(levels * 257).save(tmp_path / "wide.png")  # the same image in 16 bits
    Image.fromarray(levels.astype(np.uint8)).save(tmp_path / "narrow.png")
    wide, narrow = (np.asarray(read_image(str(tmp_path / name))) for name in ("wide.png", "narrow.png"))
    assert Image.open(tmp_path / "wide.png").mode.startswith("I")
    assert wide.shape == (8, 8, 3) and np.array_equal(wide, narrow)
    Image.fromarray(levels.astype(np.int32)).save(tmp_path / "int.tif")  # mode "I" holding 8-bit levels
    assert np.array_equal(np.asarray(read_image(str(tmp_path / "int.tif"))), narrow)


def test_a_symbolic_link_loop_in_an_image_tree_reads_each_file_once(tmp_path):
    from PIL import Image

    from noiseadaptor.data import get_dataset

    for split in ("train", "test"):
        for c in range(10):
            folder = tmp_path / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((32, 32, 3), 10 * c, np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "train" / "class0" / "again").symlink_to(tmp_path / "train" / "class0")  # a loop
    with pytest.warns(UserWarning, match="symbolic links"):
        splits = get_dataset("cifar10", tmp_path)
    assert len(splits.train) == 20 and len(splits.test) == 20


@pytest.mark.parametrize(
    "name, options",
    [("digits", {"cutout": 16}), ("digits", {"augment": "autoaugment"}), ("cifar10", {"augment": "none", "cutout": 8})],
)
def test_augmentation_options_that_would_be_ignored_are_refused(name, options, tmp_path):
    from noiseadaptor.data import get_dataset

    with pytest.raises(ValueError, match="would be ignored"):
        get_dataset(name, tmp_path, **options)


def test_hold_out_keeps_its_images_out_of_training_and_reads_them_unaugmented(tmp_path):
    from PIL import Image

    from noiseadaptor.data import DeviceLoader, get_dataset, hold_out

    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 1)):
        for c in range(10):
            (tmp_path / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                    tmp_path / split / f"c{c}" / f"{i}.png"
                )
    splits = get_dataset("cifar10", tmp_path)
    kept, held = hold_out(splits, 7)
    again = hold_out(splits, 7)[1]
    assert held.indices == again.indices and len(held) == 7  # every caller holds out the same images
    assert sorted(kept.train.indices + held.indices) == list(range(30))  # and trains on all the others
    index = held.indices[0]
    unaugmented = splits.test.transform(Image.open(splits.train.samples[index][0]).convert("RGB"))
    assert torch.equal(held[0][0], unaugmented) and torch.equal(held[0][0], held[0][0])  # no random crop or flip
    assert kept.train.dataset is splits.train  # the training part keeps its augmentation
    on_device = DeviceLoader.from_dataset(kept.train, 8, "cifar10", "cpu", train=False)
    assert len(on_device.images) == 23 and on_device.labels.tolist() == [
        splits.train.targets[i] for i in kept.train.indices
    ]
    for n in (0, 30, True):
        with pytest.raises(ValueError, match="hold out 1 to 29 training images"):
            hold_out(splits, n)
