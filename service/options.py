"""Form fields of POST /register, validated the same way as the CLI options."""

from __future__ import annotations

import re

from service.errors import Problem

CHOICES = {
    "units": ("auto", "m", "cm", "mm"),
    "up": ("auto", "x", "y", "z", "-x", "-y", "-z"),
    "device": ("auto", "cpu", "cuda"),
}
FIELDS = ("units", "up", "offsets", "model", "device")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_options(fields: dict[str, str], known_models: list[str]) -> dict:
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise Problem(422, f"unknown form field(s) {unknown}; allowed: {list(FIELDS)} and the file 'scan'")
    opts: dict = {"units": "auto", "up": "auto", "offsets": False, "model": None, "device": "auto"}
    for name, allowed in CHOICES.items():
        value = fields.get(name, opts[name]).strip().lower()
        if name == "up" and value.startswith("+"):
            value = value[1:]
        if value not in allowed:
            raise Problem(422, f"{name}={value!r} is not one of {list(allowed)}", "invalid-option")
        opts[name] = value
    offsets = fields.get("offsets", "false").strip().lower()
    if offsets not in _TRUE | _FALSE:
        raise Problem(422, f"offsets={offsets!r} must be true or false", "invalid-option")
    opts["offsets"] = offsets in _TRUE
    model = fields.get("model", "").strip()
    if model:
        # Only manifest names over HTTP: a path would let clients read files on the worker.
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", model) or model not in known_models:
            raise Problem(422, f"unknown model {model!r}; available: {known_models}", "invalid-option")
        opts["model"] = model
    return opts
