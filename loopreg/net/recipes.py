"""The training recipes of the shipped CorrNet weights, as `loopreg` argument lists (one place).

`scripts/train_corrnet.py --recipe R` runs RECIPES[R] step by step, then evaluates and ships; `ship`
records `describe(R)` in the manifest. Paths are relative to the project root (.cache/ is the cache); the
last step writes the shipped weights (their file stem is the manifest key).

gpu (corrnet.pt): a warm start on 1400 scans (7750 steps x 32 from lr 2e-3), then a second cycle from
those weights on 1600 new scans (training shards 100-139, partial and wild weighted up), 5500 steps x 32
from lr 1e-3. Each cycle is ~6-8 min on one H100; the scans take ~30 + ~22 min on a 2-core CPU.
cpu (corrnet_cpu.pt): 520 scans, two cosine cycles of 1200 steps x 8 on a 2-core CPU (~16 min data and
2 x ~33 min training).
"""

from __future__ import annotations

NET = ".cache/net"
MORE_MIX = "minimal=0.1,clothed=0.3,partial=0.3,wild=0.3"
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
        ("train", "warmup", "--data", f"{NET}/pack_more", "--out", "model_store/weights/corrnet.pt",
         "--init", f"{NET}/gpu_base.pt", "--steps", "5500", "--lr", "1e-3", *GPU),
    ),
    "cpu": (
        ("train", "data", "--out", f"{NET}/data", "--n", "520"),
        ("train", "warmup", "--data", f"{NET}/data", "--out", f"{NET}/run1/corrnet.pt", "--steps", "1200",
         "--batch", "8"),
        ("train", "warmup", "--data", f"{NET}/data", "--out", "model_store/weights/corrnet_cpu.pt",
         "--init", f"{NET}/run1/corrnet.pt", "--steps", "1200", "--batch", "8", "--lr", "1e-3",
         "--seed", "1"),
    ),
}  # fmt: skip


def describe(recipe: str) -> str:
    """The one command and what it runs, for the manifest."""
    steps = " && ".join("loopreg " + " ".join(step) for step in RECIPES[recipe])
    return f"python scripts/train_corrnet.py --recipe {recipe}  (= {steps}, then eval and ship)"
