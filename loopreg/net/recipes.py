"""The training recipes of the shipped CorrNet weights, as `loopreg` argument lists (one place).

`scripts/train_corrnet.py --recipe R` runs RECIPES[R] step by step, then evaluates and ships; `ship`
records `describe(R)` in the manifest. Paths are relative to the project root (.cache/ is the cache); the
last step writes the shipped weights (their file stem is the manifest key).

gpu (corrnet.pt): a warm start on 1400 scans (7750 steps x 32 from lr 2e-3), then a second cycle from
those weights on 1600 new scans (training shards 100-139, partial and wild weighted up), 5500 steps x 32
from lr 1e-3, then a third on 1200 new scans biased to bent poses (shards 200-229: bending forward x4,
sitting, squatting, knee raised, reaching x2, ...) plus 400 of the second cycle's, 5000 steps x 32 from
lr 1e-3, then a fourth on 1200 new scans seen from close by (shards 300-329: depth views' camera at
1.3-2.2 m instead of the suites' 1.5-3.0, so more views cut by the image frame; wild half the mix; the
same bent-pose weights), 4500 steps x 32 from lr 1e-3. Each cycle is ~5-8 min on one H100/H200; the scans
take ~30 + ~22 + ~17 + ~27 min on a 2-core CPU.
cpu (corrnet_cpu.pt): 1200 scans, two cosine cycles of 2500 steps x 8 on a 2-core CPU (2026-12-06: 8 min
data at 2.6 scans/s, 2 x 23 min training at 0.56 s a step; ~55 min in all, within the 2-hour budget).
"""

from __future__ import annotations

NET = ".cache/net"
MORE_MIX = "minimal=0.1,clothed=0.3,partial=0.3,wild=0.3"
BENT_MIX = "minimal=0.05,clothed=0.35,partial=0.25,wild=0.35"
CLOSE_MIX = "minimal=0.05,clothed=0.25,partial=0.2,wild=0.5"
BENT_POSES = (
    "bending_forward=4,sitting=2,squatting=2,knee_raised=2,reaching=2,crossed_arms=1.5,hands_on_hips=1.5"
)
GPU = ("--batch", "32", "--device", "cuda", "--threads", "7")

RECIPES: dict[str, tuple[tuple[str, ...], ...]] = {
    "gpu": (
        ("train", "data", "--out", f"{NET}/data_gpu", "--n", "1400"),
        ("train", "pack", "--data", f"{NET}/data_gpu", "--out", f"{NET}/pack_gpu", "--points", "2560"),
        ("train", "warmup", "--data", f"{NET}/pack_gpu", "--out", f"{NET}/gpu_base.pt",
         "--steps", "7750", *GPU),
        ("train", "data", "--out", f"{NET}/data_more", "--n", "1600", "--first-shard", "100",
         "--mix", MORE_MIX),
        ("train", "pack", "--data", f"{NET}/data_more", "--out", f"{NET}/pack_more", "--points", "2304"),
        ("train", "warmup", "--data", f"{NET}/pack_more", "--out", f"{NET}/gpu_more.pt",
         "--init", f"{NET}/gpu_base.pt", "--steps", "5500", "--lr", "1e-3", *GPU),
        ("train", "data", "--out", f"{NET}/data_bent", "--n", "1200", "--first-shard", "200",
         "--mix", BENT_MIX, "--poses", BENT_POSES),
        ("train", "pack", "--data", f"{NET}/data_bent", "--out", f"{NET}/pack_bent", "--points", "2304"),
        ("train", "pack", "--data", f"{NET}/data_more", "--out", f"{NET}/pack_bent", "--points", "2304",
         "--every", "4", "--offset", "2"),
        ("train", "warmup", "--data", f"{NET}/pack_bent", "--out", f"{NET}/gpu_bent.pt",
         "--init", f"{NET}/gpu_more.pt", "--steps", "5000", "--lr", "1e-3", *GPU),
        ("train", "data", "--out", f"{NET}/data_close", "--n", "1200", "--first-shard", "300",
         "--mix", CLOSE_MIX, "--poses", BENT_POSES, "--distance", "1.3,2.2"),
        ("train", "pack", "--data", f"{NET}/data_close", "--out", f"{NET}/pack_close", "--points", "2304"),
        ("train", "warmup", "--data", f"{NET}/pack_close", "--out", "model_store/weights/corrnet.pt",
         "--init", f"{NET}/gpu_bent.pt", "--steps", "4500", "--lr", "1e-3", *GPU),
    ),
    "cpu": (
        ("train", "data", "--out", f"{NET}/data_cpu", "--n", "1200"),
        ("train", "warmup", "--data", f"{NET}/data_cpu", "--out", f"{NET}/cpu_run1.pt", "--steps", "2500",
         "--batch", "8"),
        ("train", "warmup", "--data", f"{NET}/data_cpu", "--out", "model_store/weights/corrnet_cpu.pt",
         "--init", f"{NET}/cpu_run1.pt", "--steps", "2500", "--batch", "8", "--lr", "1e-3",
         "--seed", "1"),
    ),
}  # fmt: skip


def describe(recipe: str) -> str:
    """The one command and what it runs, for the manifest."""
    steps = " && ".join("loopreg " + " ".join(step) for step in RECIPES[recipe])
    return f"python scripts/train_corrnet.py --recipe {recipe}  (= {steps}, then eval and ship)"
