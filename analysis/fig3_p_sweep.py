"""Paper 000 Fig. 3 / 001 Table 3 at CPU scale: the choice of p, a paired study over seeds.

One float network (CIFAR-style ResNet-20 on the embedded digits), then Noise Adaptor QAT from it for
p = 1, 2, 3, 4, 7 (`na[p=1]` ... : each a method of one `noiseadaptor compare` study, the same data order,
calibration batch and noise stream per seed), seeds 0-7, every T up to 256, every pair against p = 2.
Writes docs/figures/fig3_p_sweep.{txt,png} (docs/RESULTS.md §4); the study folder resumes if killed.

    OMP_NUM_THREADS=1 python analysis/fig3_p_sweep.py          # about 32 CPU-minutes; two such processes share it
    python analysis/fig3_p_sweep.py --report                   # what runs/p-sweep-digits holds
"""

import argparse
import time
from pathlib import Path

from tutorials import machine  # analysis/tutorials.py

from noiseadaptor.io.report import plot_study, study_table
from noiseadaptor.study.config import StudyConfig
from noiseadaptor.study.study import run_study, summarize_folder

ROOT = Path(__file__).resolve().parents[1]
P = (1, 2, 3, 4, 7)
RECIPE = {
    "dataset": "digits", "model": "cifar-resnet20", "methods": [f"na[p={p}]" for p in P], "seeds": list(range(8)),
    "float_epochs": 30, "float_lr": 0.1, "epochs": 30, "lr": 0.05, "batch_size": 64, "T": 256, "test_images": 0,
    "baseline": "na[p=2]", "contrasts": [], "variants": [],
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="write what the study folder holds; train nothing")
    parser.add_argument("--study", type=Path, default=ROOT / "runs" / "p-sweep-digits", help="the study folder")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = parser.parse_args()
    config = StudyConfig.from_dict(RECIPE, source="fig3_p_sweep")
    start = time.time()
    summary = summarize_folder(config, args.study) if args.report else run_study(config, args.study)
    minutes = (summary["seconds"]["qat"] + summary["seconds"]["simulate"]) / 60
    text = (
        study_table(summary, steps=(1, 2, 4, 8, 16, 32, 256))
        + f"\n\n`python analysis/fig3_p_sweep.py`: its cells took {minutes:.0f} minutes to train and simulate, "
        f"summed, on a {machine()}.\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fig3_p_sweep.txt").write_text(text)
    plot_study(summary, args.out / "fig3_p_sweep.png")
    print(text + f"({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
