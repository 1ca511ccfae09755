"""The tutorials of the site run, at toy sizes, as a reader runs them; each has its page, which shows the
script and what it printed at full size (analysis/tutorials.py)."""

import runpy
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"
NAMES = sorted(p.stem for p in TUTORIALS.glob("*.py"))

# what each must print at toy size (beyond running to the end)
PRINTS = {
    "demo": ["SNN accuracy (%)", "energy, SNN / ANN", "predicted"],
    "torchvision_resnet": ["17 quantizers (17 ReLU calls)", "'AvgPool2d'", "agree"],
    "compare_study": ["na - no-noise", "95 % CI", "noiseadaptor compare --recipe"],
    "nir_and_simulators": ["NIR nodes", "SpikingJelly (the NIR file)", "sinabs (interop)"],
    "asgl_direct_training": ["ASGL  test accuracy", "SG    test accuracy", "surrogate width per layer"],
    "dual_phase": ["Phase I", "Phase II, coarse   ", "Phase II, coarse + fine", "held-out KL"],
}


def _run(name: str, *args: str) -> None:
    argv = sys.argv
    sys.argv = [str(TUTORIALS / f"{name}.py"), *args]
    try:
        with warnings.catch_warnings():  # a tutorial's own warning filters end with it
            runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        sys.argv = argv


def test_every_tutorial_is_listed_here_and_on_the_site():
    assert sorted(PRINTS) == NAMES and len(NAMES) >= 6
    nav = (ROOT / "mkdocs.yml").read_text()
    for name in NAMES:
        page = (TUTORIALS / f"{name}.md").read_text()
        assert f'--8<-- "docs/tutorials/{name}.py"' in page, name
        assert f'--8<-- "docs/tutorials/output/{name}.txt"' in page, name
        assert f"tutorials/{name}.md" in nav, name
        output = (TUTORIALS / "output" / f"{name}.txt").read_text()
        assert output.startswith(f"$ python docs/tutorials/{name}.py    # "), name  # command, time and machine
        for line in PRINTS[name]:
            if "not installed" not in output:
                assert line in output, (name, line)
        assert "on a 2-core laptop CPU" in page, name  # says how long it takes


@pytest.mark.parametrize("name", NAMES)
def test_the_tutorial_runs_at_toy_size(name, tmp_path, capsys):
    args = ["--toy", "--out", str(tmp_path)] if "--out" in (TUTORIALS / f"{name}.py").read_text() else ["--toy"]
    _run(name, *args)
    printed = capsys.readouterr().out
    for line in PRINTS[name]:
        assert line in printed, (name, line)
    if name == "demo":
        assert sorted(p.name for p in tmp_path.glob("*.png")) == [
            "conversion_error.png", "firing_rates.png", "raster.png", "traces.png"
        ]  # fmt: skip
    if name == "nir_and_simulators":
        checked = [line for line in printed.splitlines() if line.rstrip().endswith(("yes", "NO"))]
        assert checked and all(line.rstrip().endswith("yes") for line in checked), printed
        assert (tmp_path / "net.nir").is_file()
