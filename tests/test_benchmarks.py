"""Smoke test: the speed benchmark runs end to end at a toy size (its numbers are not checked here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_speed_benchmark_runs(tmp_path):
    out = tmp_path / "speed.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "speed.py"),
            "--device",
            "cpu",
            "--models",
            "cifar-resnet20",
            "--batch",
            "4",
            "--T",
            "2",
            "--steps-per-call",
            "1",
            "2",
            "--workers",
            "0",
            "--repeats",
            "1",
            "--json",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    results = json.loads(out.read_text())
    assert {"sim", "train", "data"} <= set(results)
    assert all(row["ratio_to_limit"] > 0 for row in results["sim"])


@pytest.mark.parametrize("source", ["relu", "clip"])
def test_dual_phase_ablation_runs(tmp_path, source):
    out = tmp_path / "dp"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "analysis" / "dual_phase_ablation.py"),
            "--dataset",
            "digits",
            "--model",
            "small-cnn",
            "--float-epochs",
            "1",
            "--T",
            "2",
            "--sweep-T",
            "2",
            "--sweep",
            "0",
            "8",
            "--samples",
            "16",
            "--calibration-epochs",
            "1",
            "--test-images",
            "50",
            "--source",
            source,
            "--phase1-lr",
            "0.01",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    results = json.loads((out / "results.json").read_text())
    assert ("clip source" in results) == (source == "clip")
    assert set(results["ablation"]["2"]) >= {"copy weights", "Phase I", "Phase II", "Phase I + II"}
    assert set(results["sweep"]) == {"0", "8"} and (out / "accuracy_vs_T.png").exists()


def test_asgl_width_table_runs(tmp_path):
    out = tmp_path / "asgl.png"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "analysis" / "table4_asgl_width.py"),
            "--alphas",
            "2.5",
            "--width",
            "4",
            "--epochs",
            "2",
            "--zetas",
            "1",
            "0.5",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    results = json.loads(out.with_suffix(".json").read_text())
    assert set(results["results"]["2.5"]) >= {"sg", "asgl zeta=1", "asgl zeta=0.5"} and out.exists()


def _tiny_pack(path, per_class=(3, 1)):
    """A pack.npz in the layout of ../shared/datasets/cifar10-jpeg: JPEG bytes, offsets, labels per split."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "test"), per_class):
        blobs, labels = [], []
        for label in range(10):
            for _ in range(n):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buffer, format="JPEG")
                blobs.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
                labels.append(label)
        arrays[f"{split}_jpeg"] = np.concatenate(blobs)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in blobs])
        arrays[f"{split}_labels"] = np.array(labels, dtype=np.uint8)
    np.savez(path, **arrays)


def test_gpu_study_script_runs_end_to_end_on_a_tiny_pack(tmp_path):
    pack = tmp_path / "pack.npz"
    _tiny_pack(pack)
    out = tmp_path / "gpu"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_study.py"), "--pack", str(pack), "--out", str(out),
         "--device", "cpu", "--model", "small-cnn", "--num-seeds", "2", "--float-epochs", "1", "--epochs", "1",
         "--batch-size", "8", "--T", "4", "--variants", "cos2"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    timing = json.loads((out / "timing.json").read_text())
    assert {"unpack", "float", "study"} <= set(timing["seconds"]) and timing["images"] == {"train": 30, "test": 10}
    summary = json.loads((out / "study" / "compare.json").read_text())
    assert summary["complete_seeds"] == [0, 1] and set(summary["rows"]) == {"na", "no-noise", "qcfs", "na+cos2"}
