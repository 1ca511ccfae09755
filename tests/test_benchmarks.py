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
