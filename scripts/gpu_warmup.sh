#!/usr/bin/env bash
# Does more training move the network? Two warm starts on one GPU (device tool), side by side:
#   scratch: the CorrNet recipe from scratch, one cosine cycle of S steps, batch 16 (-> the shipped corrnet.pt
#            with S=11000)
#   cont:    INIT (default: the CPU recipe's corrnet_cpu.pt) continued one cycle of S steps from lr 1e-3
# S from the environment, else from a 100-step probe of both at once sized to ~BUDGET seconds (data loading
# and validation make the probe an underestimate: 2000 steps took 75 s on an H200).
# Inputs (carried): .cache/net/pack (`loopreg train pack`: the 520 training scans as float16, 4096 points)
# and .whl (smplx, trimesh wheels). Outputs under $OUT. Evaluate the returned weights on a CPU machine:
#   loopreg train eval --weights W --suite clothed --n 64
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
BUDGET=${BUDGET:-330}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi -L
W="python3 -m loopreg.cli train warmup --data .cache/net/pack --batch 16 --device ${DEV:-cuda} --threads 7"
INIT=${INIT:-model_store/weights/corrnet_cpu.pt}
if [ -z "${S:-}" ]; then
t0=$(date +%s)
$W --out /tmp/p1.pt --steps 100 >"$OUT/probe1.log" 2>&1 &
$W --out /tmp/p2.pt --steps 100 --init "$INIT" --lr 1e-3 >"$OUT/probe2.log" 2>&1
wait
dt=$(( $(date +%s) - t0 ))
S=$(( (BUDGET * 100 / dt) / 250 * 250 ))
[ "$S" -lt 250 ] && S=250
echo "probe: 100 steps (both) in ${dt}s -> S=$S" | tee "$OUT/plan.txt"
fi
$W --out "$OUT/scratch.pt" --steps $S >"$OUT/scratch.log" 2>&1 &
$W --out "$OUT/cont.pt" --steps $S --init "$INIT" --lr 1e-3 --seed 2 >"$OUT/cont.log" 2>&1
wait
grep -h '^val\|"seconds"' "$OUT/scratch.log" | tail -4
grep -h '^val\|"seconds"' "$OUT/cont.log" | tail -4
