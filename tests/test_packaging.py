"""The package as a user installs it: every message that asks for an optional extra names one that exists,
with the line that installs it. (`.ci/run` builds the wheel and runs the command line from a fresh
environment that holds only the wheel and its dependencies.)"""

import re
from pathlib import Path

import pytest

from noiseadaptor.io.export import optional

ROOT = Path(__file__).resolve().parents[1]


def test_every_install_line_names_an_extra_that_exists():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = set()
    for path in (ROOT / "src" / "noiseadaptor").rglob("*.py"):
        named |= set(re.findall(r"pip install \"?noiseadaptor\[(\w+)\]", path.read_text()))
    assert named and named <= set(extras), named - set(extras)
    assert {"nir", "interop", "events", "all"} <= set(extras)
    everything = extras["all"][0]
    assert set(re.search(r"\[(.*)\]", everything).group(1).split(",")) == set(extras) - {"all", "test", "docs"}


def test_a_missing_extra_says_how_to_install_it():
    with pytest.raises(ValueError, match=r'^this needs the optional package no_such_module: pip install "x\[y\]"$'):
        optional("no_such_module", 'pip install "x[y]"')
