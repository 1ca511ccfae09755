#!/usr/bin/env bash
# The GPU checks, prepared so that one run (and at most one rerun) gives the whole table:
# issue 20 (the CUDA tests, benchmarks/speed.py's sections sim, sj, train, data) and issue 17 (the
# GPU-scale method study, benchmarks/gpu_study.py). Writes at most 8 files into OUT:
#   machine.txt cuda-tests.txt speed.txt speed.json study.txt compare.json timing.json compare.png
#
#   benchmarks/gpu_check.sh OUT PACK              # PACK: a copy of ../shared/datasets/cifar10-jpeg/pack.npz
#   DEVICE=cpu TINY=1 benchmarks/gpu_check.sh OUT PACK    # the dry run on a CPU, toy sizes
#
# Time limits (seconds, override by environment): SPEED_S=240 STUDY_S=300; the study's size: SEEDS=3
# FLOAT_EPOCHS=15 EPOCHS=5 T=64. Work files (the unpacked data, checkpoints) go to WORK (default /tmp).
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu_check.sh OUT PACK}
PACK=${2:?usage: benchmarks/gpu_check.sh OUT PACK}
DEVICE=${DEVICE:-cuda}
TINY=${TINY:-0}
WORK=${WORK:-/tmp/noiseadaptor-gpu-check}
SPEED_S=${SPEED_S:-240}
STUDY_S=${STUDY_S:-300}
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$WORK"
cd "$(dirname "$0")/.."

# what a bare machine lacks (the pinned torch comes from the local index; extras are best effort)
$PY -m pip install --quiet -e ".[test]" >/dev/null 2>&1 || echo "pip install -e .[test] failed" >> "$OUT/machine.txt"
$PY -m pip install --quiet "spikingjelly==2.0.0" >/dev/null 2>&1 || echo "spikingjelly not installed: no sj section" >> "$OUT/machine.txt"
{ date; nvidia-smi 2>&1 | head -15; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } >> "$OUT/machine.txt" 2>&1

# the tests that need CUDA (the fused kernels against the eager loop), then the whole suite's CUDA skips
$PY -m pytest -q -rs tests/test_snn.py tests/test_quantizer.py > "$OUT/cuda-tests.txt" 2>&1

if [ "$TINY" = 1 ]; then
    speed=(--models cifar-resnet20 --batch 4 --T 2 --steps-per-call 1 2 --workers 0 --repeats 1)
    study=(--model small-cnn --num-seeds 2 --float-epochs 1 --epochs 1 --batch-size 8 --T 4 --variants cos2)
else
    speed=(--steps-per-call 1 4 8 32 --repeats 5)
    study=(--num-seeds "${SEEDS:-3}" --float-epochs "${FLOAT_EPOCHS:-15}" --epochs "${EPOCHS:-5}" --T "${T:-64}")
fi
timeout "$SPEED_S" $PY benchmarks/speed.py --device "$DEVICE" --sections sim sj train data --json "$OUT/speed.json" \
    "${speed[@]}" > "$OUT/speed.txt" 2>&1 || echo "speed.py ended with $? (124: the time limit)" >> "$OUT/speed.txt"
timeout "$STUDY_S" $PY benchmarks/gpu_study.py --pack "$PACK" --out "$WORK" --device "$DEVICE" "${study[@]}" \
    > "$OUT/study.txt" 2>&1 || echo "gpu_study.py ended with $? (124: the time limit; it resumes)" >> "$OUT/study.txt"
for f in study/compare.json timing.json study/compare.png; do
    [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUT/"
done
if [ -f "$WORK/study/study.json" ] && [ ! -f "$OUT/compare.json" ]; then  # killed by the limit: what is done
    $PY -m noiseadaptor.cli compare --out "$WORK/study" --report >> "$OUT/study.txt" 2>&1 && cp "$WORK/study/compare.json" "$OUT/"
fi
ls -la "$OUT"
