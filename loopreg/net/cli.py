"""`loopreg train ...`: training data, supervised warm start, self-supervised loop training, evaluation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loopreg.paths import CACHE_DIR, MODEL_STORE

DEFAULT_DATA = CACHE_DIR / "net" / "data"
DEFAULT_WEIGHTS = MODEL_STORE / "weights" / "corrnet.pt"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _weights(option: str, text: str | None, names: list[str] | tuple[str, ...]) -> dict[str, float]:
    """NAME=WEIGHT,... over `names`; unlisted names keep weight 1 (the caller's defaults override)."""
    out: dict[str, float] = {}
    for item in text.split(",") if text else []:
        name, _, weight = item.partition("=")
        if name not in names:
            raise SystemExit(f"{option}: unknown name {name!r} (one of {', '.join(names)})")
        try:
            out[name] = float(weight)
        except ValueError:
            raise SystemExit(f"{option}: {item!r} is not NAME=WEIGHT with a number") from None
        if not out[name] >= 0:
            raise SystemExit(f"{option}: {item!r}: weights must be >= 0")
    return out


def _cmd_data(args: argparse.Namespace) -> int:
    from loopreg.data.poses import POSE_NAMES
    from loopreg.net.data import DataConfig, generate_dataset

    mix = dict(DataConfig().mix)
    mix.update(_weights("--mix", args.mix, list(mix)))
    poses = _weights("--poses", args.poses, POSE_NAMES) or None
    distance = None
    if args.distance:
        try:
            lo, hi = (float(x) for x in args.distance.split(","))
        except ValueError:
            raise SystemExit(f"--distance: {args.distance!r} is not LO,HI in metres") from None
        distance = (lo, hi)
    cfg = DataConfig(n_scans=args.n, n_points=args.points, mix=mix, first_shard=args.first_shard, poses=poses,
                     distance=distance)  # fmt: skip
    try:
        generate_dataset(Path(args.out), cfg, args.workers, _log)
    except ValueError as exc:
        raise SystemExit(f"loopreg train data: {exc}") from None
    return 0


def _cmd_pack(args: argparse.Namespace) -> int:
    from loopreg.net.data import pack_shards

    if args.every < 1 or args.offset < 0:
        raise SystemExit("loopreg train pack: --every must be >= 1 and --offset >= 0")
    print(pack_shards(Path(args.data), Path(args.out), args.points, args.every, args.offset))
    return 0


def _cmd_warmup(args: argparse.Namespace) -> int:
    from loopreg.net.model import NetConfig
    from loopreg.net.train import TrainConfig, warmup

    _threads(args.threads)
    cfg = TrainConfig(
        steps=args.steps, batch_size=args.batch, lr=args.lr, seed=args.seed, max_scans=args.max_scans
    )
    res = warmup(Path(args.data), Path(args.out), cfg, NetConfig(), args.device,
                 Path(args.init) if args.init else None, _log)  # fmt: skip
    print(json.dumps(res, indent=1))
    return 0


def _cmd_selfsup(args: argparse.Namespace) -> int:
    from loopreg.net.selfsup import SelfSupConfig, selfsup

    _threads(args.threads)
    cfg = SelfSupConfig(steps=args.steps, batch_size=args.batch, seed=args.seed)
    labelled = Path(args.labelled) if args.labelled else None
    res = selfsup(Path(args.scans), Path(args.init), Path(args.out), Path(args.state), cfg, args.device,
                  labelled, args.max_scans, _log)  # fmt: skip
    print(json.dumps(res, indent=1))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from loopreg.net.evaluate import evaluate_suite

    _threads(args.threads)
    res = evaluate_suite(
        Path(args.weights), args.suite, args.n, args.seed, Path(args.data) if args.data else None, args.passes
    )
    print(json.dumps({k: v for k, v in res.items() if k != "per_scan"}, indent=1))  # per scan: --json
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


def _cmd_ship(args: argparse.Namespace) -> int:
    from loopreg.net.ship import ship

    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
    entry = ship(Path(args.weights), metrics, args.note, args.name, recipe=args.recipe)
    print(json.dumps(entry, indent=1))
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """The `train` command group, added to the top-level parser."""
    train = sub.add_parser("train", help="correspondence network: data, warm start, self-supervised, eval")
    tsub = train.add_subparsers(dest="train_command", required=True)

    p = tsub.add_parser("data", help="cache labelled synthetic training scans (seeds < 1000)")
    p.add_argument("--out", default=str(DEFAULT_DATA))
    p.add_argument("--n", type=int, default=1200, help="scans (default 1200)")
    p.add_argument("--points", type=int, default=6000, help="points kept per scan")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--mix", help="suite weights, e.g. minimal=0.1,wild=0.3 (others keep their defaults)")
    p.add_argument("--poses", help="library pose weights, e.g. bending_forward=3,sitting=2 (others weigh 1)")
    p.add_argument(
        "--first-shard",
        type=int,
        default=0,
        help="first shard index (seeds); past an earlier dataset's shards for new scans",
    )
    p.add_argument("--distance", help="LO,HI: depth views' camera distance in metres (default: each suite's)")
    p.set_defaults(func=_cmd_data)

    p = tsub.add_parser("pack", help="compact float16 copy of the training data (to carry to a GPU machine)")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--out", default=str(CACHE_DIR / "net" / "pack"))
    p.add_argument("--points", type=int, default=4096)
    p.add_argument("--every", type=int, default=1, help="keep every k-th shard (name order) ...")
    p.add_argument("--offset", type=int, default=0, help="... from this one (a subset to mix in)")
    p.set_defaults(func=_cmd_pack)

    p = tsub.add_parser("warmup", help="supervised warm start on the cached synthetic scans")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-scans", type=int, default=None, help="labelled scans to use (default all)")
    p.add_argument("--init", default=None, help="start from these weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_cmd_warmup)

    p = tsub.add_parser("selfsup", help="self-supervised loop training on unlabelled scan files")
    p.add_argument("--scans", required=True, help="folder of scan files (searched recursively)")
    p.add_argument("--init", default=str(DEFAULT_WEIGHTS), help="warm-started weights")
    p.add_argument("--out", required=True, help="weights to write")
    p.add_argument("--state", default=str(CACHE_DIR / "net" / "selfsup_state.pt"), help="per-scan parameters")
    p.add_argument("--steps", type=int, default=300, help="joint steps after the per-scan fits")
    p.add_argument("--batch", type=int, default=4, help="unlabelled scans per step")
    p.add_argument("--labelled", default=None, help="also train on these labelled shards (semi-supervised)")
    p.add_argument("--max-scans", type=int, default=None, help="labelled scans to use (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_cmd_selfsup)

    p = tsub.add_parser(
        "eval", help="part accuracy, correspondence error, speed on a held-out synthetic suite"
    )
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--suite", default="clothed", choices=["minimal", "clothed", "partial", "wild"])
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--data", default=None, help="suite folder (default: generated under .cache/net/eval)")
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--passes", type=int, default=None, help="label subsets per scan (default: the pipeline's, 4)"
    )
    p.set_defaults(func=_cmd_eval)

    p = tsub.add_parser("ship", help="record weights in the model_store manifest (sha256, config, metrics)")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--metrics", default=None, help="JSON file of measured metrics to record")
    p.add_argument("--note", default="")
    p.add_argument("--name", default="corrnet", help="manifest key (corrnet: the default weights)")
    p.add_argument("--recipe", default="gpu", choices=["gpu", "cpu"], help="the training command to record")
    p.set_defaults(func=_cmd_ship)
