"""Every Python block of README and the site runs as written, given what the text says is the reader's own
(a float network, data loaders, a batch of images): here a small CNN and random 8x8 images. A page's blocks
run in order, in one namespace and one scratch folder, as a reader pastes them. Blocks that use an optional
extra are skipped where it is not installed. The tutorials' scripts run in test_tutorials.py."""

import re
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from noiseadaptor import QuantConfig, init_scales, prepare
from noiseadaptor.ann.models import create_model

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^( *)```python[^\n]*\n(.*?)^\1```", flags=re.S | re.M)


def _blocks(page: str) -> list[str]:
    found = [textwrap.dedent(code) for _, code in BLOCK.findall((ROOT / page).read_text())]
    return [code for code in found if not code.lstrip().startswith("--8<--")]  # a tutorial's script


PAGES_WITH_CODE = [page for page in PAGES if _blocks(page)]


def _reader() -> dict:
    """What the pages call the reader's own."""
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,)))
    loader = DataLoader(data, batch_size=32)
    images = next(iter(loader))[0]
    qmodel = prepare(create_model("small-cnn", num_classes=10, in_channels=1), QuantConfig(p=2))
    init_scales(qmodel, images)
    return {
        "float_model": create_model("small-cnn", num_classes=10, in_channels=1),
        "model": create_model("small-cnn", num_classes=10, in_channels=1),
        "train_loader": loader,
        "test_loader": DataLoader(data, batch_size=32),
        "images": images,
        "sample_images": images,
        "x": images,
        "batch": len(images),
        "T": 4,
        "qmodel": qmodel,
    }


def test_the_pages_with_code_are_found():
    assert {"README.md", "docs/index.md", "docs/guide/python.md", "docs/guide/export.md"} <= set(PAGES_WITH_CODE)
    assert len(PAGES_WITH_CODE) >= 9


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_the_python_blocks_of_every_page_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reader = _reader()
    for block in _blocks(page):
        try:
            exec(compile(block, page, "exec"), reader)
        except ImportError as missing:  # an optional extra: the library's message names its pip line
            pytest.skip(f"{page}: {missing}")
    if "result" in reader:  # what the page simulated, at every step up to its T
        steps = sorted(reader["result"].accuracy)
        assert steps == list(range(1, steps[-1] + 1))


def test_readmes_demo_table_is_one_the_command_printed():
    """README's table sits between the markers analysis/readme_demo.py writes, under the line it writes."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- demo-table -->\n", 1)[1].split("<!-- /demo-table -->", 1)[0]
    assert block.startswith("Measured with `noiseadaptor run` (seed 0) on a ")
    table = block.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    assert table[0] == "Top-1 accuracy (%) on digits test, cifar-resnet20, p=2, seed 0"
    assert [line.split()[0] for line in table[3:7]] == ["float", "na", "no-noise", "qcfs"]
    assert all(line == line.rstrip() for line in table)
