"""Does a method beat its baseline? A paired multi-seed study, and how to read its intervals.

One seed says where a curve lies, not which method is better: on the 359 test digits one image is 0.28
points, and a method's low-T accuracy moves between seeds by more than the gaps between methods. A study
trains every method at every seed from the same float network, with the same data order, calibration
batch and noise seed, so the seeds pair: the difference na - no-noise is taken seed by seed, and its 95 %
t-interval says what the data support. `noiseadaptor compare` is this study on the command line.

    python docs/tutorials/compare_study.py           # 8 seeds x 3 methods: about 2 minutes on 2 CPU cores
    python docs/tutorials/compare_study.py --toy     # 2 seeds, 1 epoch: seconds (what the tests run)
"""

import argparse
import sys
from pathlib import Path

from noiseadaptor.io.report import study_table
from noiseadaptor.runconfig import RunConfig
from noiseadaptor.study.config import StudyConfig
from noiseadaptor.study.study import run_study

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--toy", action="store_true", help="two seeds, one epoch, to check it runs")
parser.add_argument("--out", type=Path, default=Path("tutorial-compare"), help="the study's folder (it resumes)")
args = parser.parse_args()

config = StudyConfig(
    run=RunConfig(
        dataset="digits", model="small-cnn", epochs=1 if args.toy else 10, lr=0.05, batch_size=64, workers=0
    ),  # fmt: skip
    methods=("na", "no-noise") if args.toy else ("na", "no-noise", "qcfs"),
    seeds=(0, 1) if args.toy else tuple(range(8)),
    float_epochs=1 if args.toy else 20,
    float_lr=0.05,
    T=8 if args.toy else 32,
    test_images=0,  # every test image
    baseline="no-noise",
)
# Every finished (method, seed) cell is kept in OUT/cells: a killed study goes on where it stopped.
summary = run_study(config, args.out, log=lambda line: print(line, file=sys.stderr))  # progress on stderr
shown = [t for t in (1, 2, 4, 8, 16, 32) if t <= config.T]
print(study_table(summary, steps=shown))

# Reading it: at one T, a difference whose 95 % interval excludes 0 is supported there; one that straddles 0
# is not shown either way (it is no evidence of "no difference" unless the interval is narrow). Looking at
# several T is several tests: to claim "better at some T", read the Holm-adjusted p-value (the table's second
# number in brackets), which accounts for all the T shown.
print("\nna - no-noise, SNN top-1 (points):")
for t in shown:
    d = summary["differences"]["na"]["snn_accuracy"][str(t)]
    low, high = 100 * (d["mean"] - d["half_width"]), 100 * (d["mean"] + d["half_width"])
    if d["p_value"] is None:  # one seed, or the same difference on every seed: no t-interval
        print(f"  T={t:>3}: {100 * d['mean']:+6.2f}, no interval (one seed, or the same on every seed)")
        continue
    verdict = "na higher" if low > 0 else "na lower" if high < 0 else "no difference shown"
    holm = "" if d.get("p_holm") is None else f", Holm-adjusted p = {d['p_holm']:.2g}"
    print(f"  T={t:>3}: {100 * d['mean']:+6.2f}, 95 % CI [{low:+6.2f}, {high:+6.2f}] over {d['n']} seeds: "
          f"{verdict} (p = {d['p_value']:.2g}{holm})")  # fmt: skip
print(f"\nThe same study from the command line: noiseadaptor compare --recipe {args.out / 'study.json'} "
      f"--out {args.out}")  # fmt: skip
