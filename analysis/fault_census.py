"""The fault census: every bad input and fault we know of, run through the command line as a new user would,
each classified by what the user sees.

    python analysis/fault_census.py [--only SUBSTRING] [--json census.json]

Each case is one `noiseadaptor ...` command (in a fresh process, on the embedded digits data, in a temporary
folder) with what it should do: `refuse` (exit non-zero with a message and no traceback), `warn` (run, and
say so on stderr) or `ok` (run). Outcomes: `message` (refused, no traceback), `traceback`, `ran`, `ran+warning`.
A case passes when the outcome is what it should do (`refuse` -> message; `warn` -> ran+warning or message;
`ok` -> ran or ran+warning). Faults that need a process killed or two processes at once are run here too
(SIGKILL mid-run then resume; two runs on one --out). The table is printed; --json writes every case's
command, outcome and last stderr line. Exit status: the number of failing cases (0: all as they should be).

About 3-6 s a case (one Python start with torch each); ~160 cases, 15-25 minutes on 2 cores.
"""

import argparse
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "noiseadaptor.cli"]
DIGITS = ["--dataset", "digits", "--model", "small-cnn", "--workers", "0", "--no-progress", "--device", "cpu"]


def cli(*args, timeout=600, env=None, file_size_limit=None):
    """One command in a fresh process (with RLIMIT_FSIZE set to `file_size_limit` bytes, as `ulimit -f`)."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit,) * 2)) if file_size_limit else None
    begin = time.time()
    done = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=limit)  # fmt: skip
    return done.returncode, done.stdout, done.stderr, time.time() - begin


def outcome(rc: int, out: str, err: str) -> str:
    if "Traceback (most recent call last)" in out + err:
        return "traceback"
    if rc != 0:
        return "message"
    return "ran+warning" if "warning" in err.lower() else "ran"


PASSES = {"refuse": {"message"}, "warn": {"ran+warning", "message"}, "ok": {"ran", "ran+warning"}}


def last_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


class Census:
    def __init__(self, root: Path, only: str | None):
        self.root, self.only, self.rows = root, only, []

    def case(self, name: str, expect: str, *args, check=None, env=None, file_size_limit=None):
        """Run one case; `check(rc, out, err)` may return a reason it fails although the outcome fits."""
        if self.only and self.only not in name:
            return
        rc, out, err, seconds = cli(*args, env=env, file_size_limit=file_size_limit)
        got = outcome(rc, out, err)
        why = None if got in PASSES[expect] else f"expected {expect}"
        if why is None and check is not None:
            why = check(rc, out, err)
        self.record(name, expect, got, why, err, args, seconds)

    def record(self, name, expect, got, why, err, args, seconds):
        row = {"case": name, "expect": expect, "outcome": got, "pass": why is None, "why": why,
               "stderr": last_line(err), "command": "noiseadaptor " + " ".join(map(str, args)),
               "seconds": round(seconds, 1)}  # fmt: skip
        self.rows.append(row)
        mark = "ok  " if why is None else "FAIL"
        print(f"{mark} {name:58s} {got:12s} {row['stderr'][:100]}", flush=True)

    def path(self, *parts) -> Path:
        return self.root.joinpath(*parts)


def prepare_files(root: Path) -> dict:
    """What the cases need: a float and a Noise Adaptor checkpoint of the digits net, broken files, folders."""
    files = {}
    for name, extra in (("float", ["--method", "float", "--epochs", "2"]),):
        rc, _, err, _ = cli("train", *DIGITS, *extra, "--out", root / name)
        assert rc == 0, err
    rc, _, err, _ = cli("train", *DIGITS, "--method", "na", "--init", root / "float/checkpoint.pt", "--epochs", "1",
                        "--out", root / "na")  # fmt: skip
    assert rc == 0, err
    files["float"], files["na"] = root / "float/checkpoint.pt", root / "na/checkpoint.pt"
    good = files["na"].read_bytes()
    files["truncated"] = root / "truncated.pt"
    files["truncated"].write_bytes(good[: len(good) // 2])
    files["empty"] = root / "empty.pt"
    files["empty"].write_bytes(b"")
    files["text"] = root / "notes.pt"
    files["text"].write_text("not a checkpoint\n")
    import torch

    state = torch.load(files["na"], weights_only=False)
    for value in state["model"].values():
        if value.is_floating_point():
            value.fill_(math.nan)
    files["nan"] = root / "nan.pt"
    torch.save(state, files["nan"])
    state = torch.load(files["na"], weights_only=False)  # finite weights, NaN BatchNorm statistics
    for key, value in state["model"].items():
        if key.endswith("running_var"):
            value.fill_(math.nan)
    files["nan-statistics"] = root / "nan-statistics.pt"
    torch.save(state, files["nan-statistics"])
    for key in ("config", "epoch"):
        files[f"no-{key}"] = root / f"no-{key}.pt"
        torch.save({k: v for k, v in state.items() if k != key}, files[f"no-{key}"])
    recipes = {
        "bad-syntax": "epochs: [1, 2\nlr: 0.1\n",
        "a-list": "- epochs\n- lr\n",
        "lr-list": "dataset: digits\nmodel: small-cnn\nlr: [0.1, 0.2]\n",
        "resume-no": "dataset: digits\nmodel: small-cnn\nmethod: float\nepochs: 1\nresume: 'no'\n",
        "unknown-key": "dataset: digits\nmodel: small-cnn\nepoch: 3\n",
        "epochs-string": "dataset: digits\nmodel: small-cnn\nepochs: three\n",
        "amp-no": "dataset: digits\nmodel: small-cnn\nmethod: float\namp: 'no'\n",
        "method-list": "dataset: digits\nmodel: small-cnn\nmethod: [na]\n",
        "model-mapping": "dataset: digits\nmodel: {name: small-cnn}\n",
        "milestones-number": "dataset: digits\nmodel: small-cnn\nmethod: asgl\nnoise_decay: 0.5\nnoise_milestones: 5\n",
        "key-twice": "dataset: digits\nmodel: small-cnn\nlr: 0.1\nlr: 0.2\n",
        "lr-nan": "dataset: digits\nmodel: small-cnn\nlr: .nan\n",
        "empty": "",
    }
    for name, text in recipes.items():
        files[f"recipe-{name}"] = root / f"{name}.yaml"
        files[f"recipe-{name}"].write_text(text)
    files["a-file"] = root / "a-file"
    files["a-file"].write_text("x")
    for name in ("empty-folder", "broken-image/train/cat", "broken-image/val/cat"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "broken-image/train/cat/0.png").write_bytes(b"\x89PNG not really")
    (root / "broken-image/val/cat/0.png").write_bytes(b"\x89PNG not really")
    image_trees(root, files)
    return files


def image_trees(root: Path, files: dict) -> None:
    """CIFAR-10-style folders (train/ and test/, 10 classes of 4 images) that are not what they claim, and
    MNIST's raw folder with a truncated download."""
    import gzip

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)

    def tree(name, size=32, mode="RGB"):
        for split in ("train", "test"):
            for c in range(10):
                (root / name / split / f"class{c}").mkdir(parents=True)
                for i in range(4):
                    pixels = rng.integers(0, 256, (size, size, 3) if mode == "RGB" else (size, size), dtype="uint8")
                    if mode == "I;16":
                        pixels = pixels.astype("uint16") * 257
                    Image.fromarray(pixels).save(root / name / split / f"class{c}" / f"{i}.png")
        files[f"tree-{name}"] = root / name

    tree("big", size=64)
    tree("odd")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype="uint8")).save(root / "odd/train/class5/2.png")
    tree("grey16", mode="I;16")
    tree("loop")
    (root / "loop/train/class0/again").symlink_to(root / "loop/train/class0")
    raw = root / "mnist/MNIST/raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 60), ("t10k", 10)):
        for kind, magic, shape in (("images", 0x803, (n, 28, 28)), ("labels", 0x801, (n,))):
            header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
            data = gzip.compress(header + rng.integers(0, 10, shape, dtype="uint8").tobytes())
            (raw / f"{split}-{kind}-idx{len(shape)}-ubyte.gz").write_bytes(data[:-40] if split == "train" else data)
    files["mnist-truncated"] = root / "mnist"


def train_cases(c: Census, f: dict):
    base = ["train", *DIGITS, "--epochs", "1"]
    out = lambda name: ["--out", c.path("out", name)]  # noqa: E731
    nan_written = lambda *_: "a NaN checkpoint was written" if c.path("out/nan/checkpoint.pt").exists() else None  # noqa: E731
    c.case("train: NaN (lr 1e6)", "refuse", *base, "--method", "na", "--init", f["float"], "--lr", "1e6", *out("nan"),
           check=nan_written)  # fmt: skip
    for flag, value in (("--lr", "-1"), ("--lr", "0"), ("--epochs", "-1"), ("--epochs", "abc"), ("--batch-size", "0"),
                        ("--workers", "-1"), ("--cutout", "-5"), ("--p", "0"), ("--p", "-2"), ("--p", "1.5"),
                        ("--quant-noise-p", "0.5"), ("--weight-decay", "-1"), ("--seed", "-1"), ("--seed", "x"),
                        ("--seed", str(2**64)),
                        ("--model", "nope"), ("--dataset", "nope"), ("--method", "nope"), ("--device", "foo"),
                        ("--device", "cuda"), ("--device", "cuda:7"), ("--init", c.path("missing.pt")),
                        ("--init", f["truncated"]), ("--init", f["empty"]), ("--init", f["text"]), ("--init", f["nan"]),
                        ("--weights", "NOPE"), ("--recipe", c.path("missing.yaml")), ("--augment", "foo")):  # fmt: skip
        c.case(f"train {flag} {Path(value).name if '/' in str(value) else value}", "refuse", *base, flag, value,
               *out(f"bad{flag}"))  # fmt: skip
    for method, flag, value in (("dual-phase", "--quant-noise-p", "1.5"), ("asgl", "--spike-noise-p", "-0.1"),
                                ("asgl", "--time-steps", "0"), ("asgl", "--tau", "0"), ("asgl", "--threshold", "-1"),
                                ("asgl", "--alpha", "0"), ("asgl", "--noise-decay", "2"), ("sg", "--steepness", "0"),
                                ("asgl", "--width-lr", "-1")):  # fmt: skip
        c.case(f"train --method {method} {flag} {value}", "refuse", *base, "--method", method, flag, value,
               *out(f"bad-{method}{flag}"))  # fmt: skip
    for name in ("bad-syntax", "a-list", "lr-list", "resume-no", "unknown-key", "epochs-string", "amp-no",
                 "method-list", "model-mapping", "milestones-number", "key-twice", "lr-nan"):  # fmt: skip
        c.case(f"train --recipe {name}", "refuse", "train", "--recipe", f[f"recipe-{name}"], "--workers", "0",
               "--no-progress", *out(f"recipe-{name}"))  # fmt: skip
    c.case("train --recipe empty.yaml (no settings: the defaults)", "refuse", "train", "--recipe", f["recipe-empty"],
           "--data-dir", c.path("empty-folder"), "--no-progress", *out("recipe-empty"))  # fmt: skip
    c.case("train --out names a file", "refuse", *base, "--method", "float", "--out", f["a-file"])
    c.case("train cifar10 from an empty --data-dir (no --download)", "refuse", "train", "--dataset", "cifar10",
           "--data-dir", c.path("empty-folder"), "--model", "small-cnn", "--epochs", "1", *out("nodata"))  # fmt: skip
    folder = ["train", "--dataset", "imagenet", "--model", "small-cnn", "--epochs", "1", "--no-progress"]
    c.case("train an image folder that is empty", "refuse", *folder, "--data-dir", c.path("empty-folder"),
           "--workers", "0", *out("emptyfolder"))  # fmt: skip
    c.case("train an image folder with an unreadable image", "refuse", *folder, "--data-dir", c.path("broken-image"),
           "--workers", "2", *out("broken"))  # fmt: skip
    c.case("train --resume with nothing to resume", "warn", *base, "--method", "float", "--resume", *out("fresh"))
    c.case("train --resume a run of other settings", "refuse", *base, "--method", "no-noise", "--init", f["float"],
           "--resume", "--out", f["na"].parent)  # fmt: skip
    c.case("train --resume --epochs fewer than done", "refuse", "train", *DIGITS, "--method", "float", "--epochs", "1",
           "--resume", "--out", f["float"].parent)  # fmt: skip
    c.case("train --method na without --init (random start)", "warn", *base, "--method", "na", *out("random"))
    c.case("train --init a float net of another architecture", "refuse", *base, "--method", "na", "--model",
           "cifar-resnet20", "--init", f["float"], *out("otherarch"))  # fmt: skip
    c.case("train --cutout 16 on digits", "refuse", *base, "--method", "float", "--cutout", "16", *out("cutout"))
    c.case("train --batch-size 1 (BatchNorm on one image)", "refuse", *base, "--method", "float", "--batch-size",
           "1", *out("batch1"))  # fmt: skip
    c.case("train --out with a 300-character name", "refuse", *base, "--method", "float", "--out",
           c.path("x" * 300))  # fmt: skip
    c.case("train a good float run (control)", "ok", *base, "--method", "float", *out("control"))


def data_cases(c: Census, f: dict):
    cifar = ["train", "--dataset", "cifar10", "--model", "small-cnn", "--method", "float", "--epochs", "1",
             "--workers", "0", "--no-progress", "--device", "cpu"]  # fmt: skip
    c.case("train cifar10 on a tree of 64x64 images", "refuse", *cifar, "--data-dir", f["tree-big"],
           "--out", c.path("data", "big"))  # fmt: skip
    c.case("train cifar10 with one 16x16 image among 32x32", "refuse", *cifar, "--data-dir", f["tree-odd"],
           "--out", c.path("data", "odd"))  # fmt: skip
    c.case("train cifar10 on 16-bit greyscale PNGs", "ok", *cifar, "--data-dir", f["tree-grey16"],
           "--out", c.path("data", "grey16"))  # fmt: skip
    c.case("train cifar10 with a symbolic-link loop in a class", "warn", *cifar, "--data-dir", f["tree-loop"],
           "--out", c.path("data", "loop"))  # fmt: skip
    cache = c.path("data", "mnist-cache")
    left = lambda *_: "a .partial file was left" if list(cache.rglob("*.partial")) else None  # noqa: E731
    c.case("train mnist from a truncated .gz", "refuse", "train", "--dataset", "mnist", "--data-dir",
           f["mnist-truncated"], "--model", "small-cnn", "--method", "float", "--epochs", "1", "--workers", "0",
           "--no-progress", "--out", c.path("data", "mnist"), check=left,
           env={**os.environ, "NOISEADAPTOR_DATA": str(cache)})  # fmt: skip


def evaluate_cases(c: Census, f: dict):
    for name in ("truncated", "empty", "text", "nan", "nan-statistics", "no-config", "no-epoch"):
        c.case(f"evaluate a {name} checkpoint", "refuse", "evaluate", f[name], "--T", "4", "--no-progress")
    c.case("evaluate a missing checkpoint", "refuse", "evaluate", c.path("missing.pt"))
    for flag, value in (("--T", "0"), ("--T", "-3"), ("--offset-spikes", "-1"), ("--srp", "-1"),
                        ("--device", "foo"), ("--batch-size", "0"), ("--calibrate", "bogus"),
                        ("--calibration-samples", "0")):  # fmt: skip
        c.case(f"evaluate {flag} {value}", "refuse", "evaluate", f["na"], flag, value, "--no-progress", "--workers",
               "0")  # fmt: skip
    c.case("evaluate --offset-spikes with --srp", "refuse", "evaluate", f["na"], "--offset-spikes", "2", "--srp",
           "2", "--T", "4", "--no-progress")  # fmt: skip
    c.case("evaluate --out names a file", "refuse", "evaluate", f["na"], "--T", "2", "--out", f["a-file"])
    c.case("evaluate --calibration-samples 100000 (more than the split)", "warn", "evaluate", f["na"], "--T", "2",
           "--calibrate", "coarse", "--calibration-samples", "100000", "--no-progress", "--workers", "0")  # fmt: skip
    said = lambda rc, out, err: None if "times the work" in err else "no word on the work"  # noqa: E731
    c.case("evaluate --T 4100 (long: says so)", "warn", "evaluate", f["na"], "--T", "4100", "--no-progress",
           "--workers", "0", check=said)  # fmt: skip
    c.case("evaluate --out with a 300-character name", "refuse", "evaluate", f["na"], "--T", "2", "--out",
           c.path("x" * 300))  # fmt: skip
    c.case("evaluate a float checkpoint (ANN only, control)", "ok", "evaluate", f["float"], "--no-progress")
    c.case("evaluate a NA checkpoint at T=4 (control)", "ok", "evaluate", f["na"], "--T", "4", "--no-progress")


def inspect_and_check_cases(c: Census, f: dict):
    out = c.path("inspect")
    for name in ("truncated", "text", "nan"):
        c.case(f"inspect a {name} checkpoint", "refuse", "inspect", f[name], "--out", out / name)
    c.case("inspect a missing checkpoint", "refuse", "inspect", c.path("missing.pt"), "--out", out / "missing")
    c.case("inspect a float checkpoint", "refuse", "inspect", f["float"], "--out", out / "float")
    for flag, value in (("--image", "100000"), ("--image", "-1"), ("--T", "0"), ("--neurons", "0"),
                        ("--images", "0"), ("--device", "foo")):  # fmt: skip
        c.case(f"inspect {flag} {value}", "refuse", "inspect", f["na"], flag, value, "--out", out / (flag + value))
    c.case("inspect --out names a file", "refuse", "inspect", f["na"], "--out", f["a-file"])
    c.case("inspect a NA checkpoint (control)", "ok", "inspect", f["na"], "--T", "4", "--images", "32", "--out",
           out / "good")  # fmt: skip
    c.case("check a missing file", "refuse", "check", c.path("missing.pt"))
    c.case("check a text file", "refuse", "check", f["text"])
    c.case("check a folder", "refuse", "check", c.path("empty-folder"))
    c.case("check an unknown model name", "refuse", "check", "resnet_bogus")
    c.case("check --num-classes 0", "refuse", "check", "resnet18", "--num-classes", "0")
    c.case("check --in-channels -1", "refuse", "check", "resnet18", "--in-channels", "-1")
    c.case("check a NA checkpoint (control)", "ok", "check", f["na"])
    c.case("check resnet18 (control)", "ok", "check", "resnet18")


def export_cases(c: Census, f: dict):
    out = c.path("export")
    c.case("export --input-shape 3,8,8 on a 1-channel net", "refuse", "export", f["na"], "--format", "onnx",
           "--input-shape", "3,8,8", "--out", out / "a.onnx")  # fmt: skip
    c.case("export --input-shape abc", "refuse", "export", f["na"], "--input-shape", "abc", "--out", out / "b.nir")
    c.case("export --format bogus", "refuse", "export", f["na"], "--format", "bogus")
    c.case("export a float checkpoint", "refuse", "export", f["float"], "--out", out / "c.nir")
    c.case("export a NaN checkpoint", "refuse", "export", f["nan"], "--out", out / "d.nir")
    c.case("export a truncated checkpoint", "refuse", "export", f["truncated"], "--out", out / "e.nir")
    c.case("export --out into a file's folder", "refuse", "export", f["na"], "--out", f["a-file"] / "x.nir")
    for bits in ("1", "17", "32", "64"):
        c.case(f"export --weight-bits {bits}", "refuse", "export", f["na"], "--weight-bits", bits, "--out",
               out / f"bits{bits}.nir")  # fmt: skip
    c.case("export --out with a 300-character name", "refuse", "export", f["na"], "--out", out / ("x" * 300))
    nothing_left = lambda *_: f"left {sorted(p.name for p in (out / 'small').iterdir())}" if any(  # noqa: E731
        (out / "small").iterdir()) else None  # fmt: skip
    (out / "small").mkdir(parents=True, exist_ok=True)
    c.case("export under ulimit -f (4 KiB)", "refuse", "export", f["na"], "--out", out / "small" / "a.nir",
           file_size_limit=4096, check=nothing_left)  # fmt: skip
    c.case("export NIR (control)", "ok", "export", f["na"], "--out", out / "good.nir")


def compare_and_run_cases(c: Census, f: dict):
    base = ["compare", "--dataset", "digits", "--model", "small-cnn", "--float-epochs", "1", "--epochs", "1",
            "--T", "2", "--no-progress", "--device", "cpu"]  # fmt: skip
    for flag, value in (("--num-seeds", "0"), ("--methods", "na,bogus"), ("--baseline", "bogus"),
                        ("--variants", "cos0"), ("--variants", "bogus"), ("--method-lr", "qcfs=-1"),
                        ("--method-lr", "bogus=0.1"),
                        ("--T", "0"), ("--p", "0"), ("--test-images", "-1"), ("--lr", "nan")):  # fmt: skip
        c.case(f"compare {flag} {value}", "refuse", *base, flag, value, "--out", c.path("cmp", flag + value))
    for flags in (["--exit", "confidence=1.5"], ["--exit", "confidence"], ["--exit", "margin=0.5,min_steps=0"],
                  ["--exit", "confidence=0.9", "--exit-holdout", "100000"],
                  ["--exit", "confidence=0.9", "--exit-tolerance", "2"], ["--exit-holdout", "300"]):  # fmt: skip
        nothing_left = lambda *_, o=c.path("cmp", "".join(flags)): f"wrote {o}" if o.exists() else None  # noqa: E731
        c.case(f"compare {' '.join(flags)}", "refuse", *base, *flags, "--out", c.path("cmp", "".join(flags)),
               check=nothing_left)  # fmt: skip
    c.case(
        "compare --exit on one seed (control)",
        "ok",
        *base,
        "--num-seeds",
        "1",
        "--methods",
        "na",
        "--baseline",
        "na",
        "--exit",
        "confidence=0.9",
        "margin=0.5",
        "--exit-holdout",
        "100",
        "--out",
        c.path("cmp", "exit"),
    )
    c.case("compare --report on an empty folder", "refuse", "compare", "--report", "--out", c.path("empty-folder"))
    c.case("compare --out names a file", "refuse", *base, "--out", f["a-file"])
    for flag, value in (("--T", "0"), ("--lr", "1e6"), ("--epochs", "-1"), ("--methods", "bogus"), ("--p", "0")):
        c.case(f"run {flag} {value}", "refuse", "run", "--no-progress", flag, value, "--out", c.path("run", flag))
    c.case("run --out names a file", "refuse", "run", "--no-progress", "--out", f["a-file"])
    tiny = ["run", "--no-progress", "--model", "small-cnn", "--float-epochs", "1", "--epochs", "1", "--T", "2",
            "--methods", "na", "--out", c.path("run", "tiny")]  # fmt: skip
    c.case("run at tiny settings (control)", "ok", *tiny)
    c.case("run --resume with another --batch-size", "refuse", *tiny, "--resume", "--batch-size", "32")
    c.case("run --resume with another --float-epochs", "refuse", *tiny, "--resume", "--float-epochs", "2")


def process_faults(c: Census, f: dict):
    """SIGKILL mid-run then resume; Ctrl-C (SIGINT); two runs on one --out at once."""
    if c.only and c.only not in "process faults: sigkill sigint two runs":
        return
    out = c.path("interrupted")
    args = ["train", *DIGITS, "--method", "float", "--epochs", "30", "--out", out]
    proc = subprocess.Popen(
        [*CLI, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # as a terminal sends it
    while not (out / "checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    o, e = proc.communicate()
    got = outcome(proc.returncode, o, e)
    why = None if got == "message" and proc.returncode == 130 and len(e.strip().splitlines()) == 1 else \
        f"expected one line and exit 130, got exit {proc.returncode}"  # fmt: skip
    c.record("Ctrl-C (SIGINT) mid-run", "refuse", got, why, e, args, 0.0)

    out = c.path("killed")
    args = ["train", *DIGITS, "--method", "float", "--epochs", "6", "--out", out]
    proc = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not (out / "checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rc, o, e, s = cli(*args, "--resume")
    got = outcome(rc, o, e)
    c.record("SIGKILL mid-run, then --resume", "ok", got, None if got in PASSES["ok"] else "expected ok", e, args, s)

    out = c.path("twice")
    args = ["train", *DIGITS, "--method", "float", "--epochs", "30", "--out", out]
    first = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not (out / "checkpoint.pt").exists() and first.poll() is None:
        time.sleep(0.05)
    rc, o, e, s = cli(*args, "--resume")  # the second run on the same folder, while the first still writes
    first.kill()
    first.wait()
    got = outcome(rc, o, e)
    c.record("two runs on one --out at once", "refuse", got, None if got in PASSES["refuse"] else "expected refuse",
             e, args, s)  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="run only the cases whose name contains this")
    ap.add_argument("--json", type=Path, help="write every case here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fault-census-"))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # a CPU-only user, even on a GPU machine
    os.environ.update(env)
    census = Census(root, args.only)
    try:
        files = prepare_files(root)
        groups = (train_cases, data_cases, evaluate_cases, inspect_and_check_cases, export_cases,
                  compare_and_run_cases, process_faults)  # fmt: skip
        for group in groups:
            group(census, files)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    failing = [r for r in census.rows if not r["pass"]]
    counts = {}
    for r in census.rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    print(f"\n{len(census.rows)} cases, {len(census.rows) - len(failing)} as they should be; outcomes {counts}")
    for r in failing:
        print(f"  FAIL {r['case']}: {r['outcome']} ({r['why']}): {r['stderr'][:120]}")
    if args.json:
        args.json.write_text(json.dumps({"cases": census.rows}, indent=1))
    sys.exit(min(len(failing), 100))


if __name__ == "__main__":
    main()
