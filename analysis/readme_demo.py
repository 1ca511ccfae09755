"""Run README's first command (`noiseadaptor run`, its defaults) and write the table it prints into README.md,
between the `<!-- demo-table -->` markers, under a line that says the machine, the seed and the wall time.

    python analysis/readme_demo.py      # about a minute and a half on 2 CPU cores
"""

import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKERS = re.compile(r"(<!-- demo-table -->\n).*?(<!-- /demo-table -->)", flags=re.S)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        start = time.time()
        done = subprocess.run([sys.executable, "-m", "noiseadaptor.cli", "run", "--no-progress"], cwd=scratch,
                              capture_output=True, text=True, check=True)  # fmt: skip
        seconds = time.time() - start
    printed = done.stdout.split("\nOne seed:")[0]
    table = "\n".join(line.rstrip() for line in printed[printed.index("Top-1 accuracy") :].strip("\n").splitlines())
    machine = f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}"
    block = (
        f"Measured with `noiseadaptor run` (seed 0) on a {machine}, {seconds:.0f} s wall clock; other machines "
        f"and thread counts sum floats in another order and can differ by an image or two:\n\n```text\n{table}\n```\n"
    )
    text = README.read_text()
    if not MARKERS.search(text):
        sys.exit("README.md has no <!-- demo-table --> ... <!-- /demo-table --> markers")
    README.write_text(MARKERS.sub(lambda m: m.group(1) + block + m.group(2), text))
    print(block)


if __name__ == "__main__":
    main()
