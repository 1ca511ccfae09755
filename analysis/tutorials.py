"""Run every tutorial of docs/tutorials at its full size and keep what it prints (and draws) for the site.

Each runs in its own process, as a reader runs it (`python docs/tutorials/NAME.py`), from a scratch folder;
its output goes to docs/tutorials/output/NAME.txt under a line with the command, the machine and the wall
time, and its figures to docs/tutorials/output/NAME/. The tests run the same scripts at toy sizes
(tests/test_tutorials.py).

    python analysis/tutorials.py                 # all of them (about 15 minutes on 2 CPU cores)
    python analysis/tutorials.py demo dual_phase # some
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"
OUTPUT = TUTORIALS / "output"


def machine() -> str:
    import torch

    python = platform.python_version()
    return f"{os.cpu_count()}-core CPU ({platform.machine()}), Python {python}, torch {torch.__version__}"


def run(name: str) -> None:
    script = TUTORIALS / f"{name}.py"
    with tempfile.TemporaryDirectory() as scratch:
        start = time.time()
        done = subprocess.run([sys.executable, str(script)], cwd=scratch, capture_output=True, text=True)
        seconds = time.time() - start
        if done.returncode:
            sys.exit(f"{name} failed:\n{done.stderr}")
        figures = sorted(Path(scratch).rglob("*.png"))
        if figures:
            folder = OUTPUT / name
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for figure in figures:
                shutil.copy(figure, folder / figure.name)
    header = f"$ python docs/tutorials/{name}.py    # {seconds:.0f} s on a {machine()}\n"
    (OUTPUT / f"{name}.txt").write_text(header + done.stdout)
    print(f"{name}: {seconds:.0f} s")


if __name__ == "__main__":
    names = sorted(p.stem for p in TUTORIALS.glob("*.py"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"tutorials to run, of {', '.join(names)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"no tutorial {', '.join(unknown)}; there are {', '.join(names)}")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for name in args.names or names:
        run(name)
