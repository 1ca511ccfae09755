"""The Python blocks of README and the site's home page run as written, given what they say is the reader's
own (a float network and two data loaders): here a small CNN and random 8x8 images."""

import re
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from noiseadaptor.ann.models import create_model

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/index.md"]


def _blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), flags=re.S)


@pytest.mark.parametrize("page", PAGES)
def test_the_python_blocks_of_the_front_pages_run(page):
    blocks = _blocks(page)
    assert blocks, page
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,)))
    for block in blocks:
        reader = {
            "float_model": create_model("small-cnn", num_classes=10, in_channels=1),
            "train_loader": DataLoader(data, batch_size=32),
            "test_loader": DataLoader(data, batch_size=32),
        }
        exec(compile(block, page, "exec"), reader)
        if "result" in reader:
            assert sorted(reader["result"].accuracy)[-1] == 256
