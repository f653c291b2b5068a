#!/usr/bin/env bash
# Two CorrNet warm starts side by side on one GPU (device tool), each one cosine cycle of S steps:
#   a: `loopreg train warmup` with the arguments in $A (default: batch 16, the recipe up to 2026-11-26)
#   b: the same with the arguments in $B (default: batch 32; the GPU is launch-bound at batch 16, so a
#      second sample per step costs little)
# S from the environment, else from a $P-step (400) probe of both at once: the seconds per step between steps
# 100 and $P of the slower run (start-up excluded, validation included), sized to ~BUDGET seconds.
# A second cycle from shipped weights W: A="--batch 32 --init W --lr 1e-3" (what corrnet.pt had on 2026-11-27).
# Inputs (carried): $DATA (`loopreg train pack`: the training scans as float16) and .whl (smplx and
# trimesh wheels). Outputs under $OUT: a.pt, b.pt (best validation loss of each) and the logs. Evaluate
# the returned weights on a CPU machine: loopreg train eval --weights W --suite clothed --n 64
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
BUDGET=${BUDGET:-420}
DATA=${DATA:-.cache/net/pack_gpu}  # what `scripts/train_corrnet.py --recipe gpu` packs
PY=${PY:-python3}
P=${P:-400}  # probe steps
A=${A:---batch 16}
B=${B:---batch 32}
mkdir -p "$OUT"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi -L
W="$PY -m loopreg.cli train warmup --data $DATA --device ${DEV:-cuda} --threads 7"
if [ -z "${S:-}" ]; then
  $W $A --out /tmp/pa.pt --steps "$P" >"$OUT/probe_a.log" 2>&1 &
  $W $B --out /tmp/pb.pt --steps "$P" >"$OUT/probe_b.log" 2>&1
  wait
  S=$($PY - "$BUDGET" "$P" "$OUT/probe_a.log" "$OUT/probe_b.log" <<'EOF'
import re, sys
budget, p, logs = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
def t(log, step):
    for line in open(log):
        m = re.match(rf"step {step}/\d+ .* (\d+)s$", line.strip())
        if m:
            return float(m.group(1))
    raise SystemExit(f"{log}: no step {step}")
per_step = max(max((t(f, p) - t(f, 100)) / (p - 100) for f in logs), 1e-3)
print(max(250, int(budget / per_step) // 250 * 250))
EOF
  ) || exit 1
  echo "probe: S=$S for ~${BUDGET}s" | tee "$OUT/plan.txt"
fi
$W $A --out "$OUT/a.pt" --steps "$S" >"$OUT/a.log" 2>&1 &
$W $B --out "$OUT/b.pt" --steps "$S" >"$OUT/b.log" 2>&1
wait
grep -h '^val' "$OUT/a.log" | tail -3
grep -h '^val' "$OUT/b.log" | tail -3
