"""Config checks that fail a run before any job starts, with messages a person can act on.

`config_errors` validates against the JSON schema like Snakemake's `validate`, but reports each
problem as one line naming the key (`models.dinov2.devce: unknown key; did you mean 'device'?`)
instead of the schema and the whole config. `patch_size_errors` catches an `image_size` that the
model's patch grid cannot tile, for models whose patch size the config or a known hub id fixes, so
`snakemake -n` fails instead of the extraction job hours later.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path

import yaml

from encoderlens.models.families import OWN_MODEL_DOCS

MAX_ERRORS = 5
MAX_MESSAGE = 160

# patch sizes (the total stride for CNNs) that a hub id fixes: an explicit "patchN" in the id, then
# the known checkpoints of each family
HUB_PATCH = (
    (re.compile(r"patch(\d+)"), None),
    (re.compile(r"^facebook/dinov2-"), 14),
    (re.compile(r"^facebook/dino-vit[a-z](\d+)$"), None),  # DINO v1: dino-vitb16, dino-vits8
    (re.compile(r"^facebook/dinov3-vit"), 16),
    (re.compile(r"^facebook/vit-mae-huge"), 14),
    (re.compile(r"^facebook/vit-mae-(base|large)"), 16),
    (re.compile(r"^geolocal/StreetCLIP$"), 14),
    (re.compile(r"^timm/resnet\d+"), 32),
)


def _load(schema: dict | str | Path) -> dict:
    if isinstance(schema, dict):
        return schema
    with open(schema, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _where(path) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def _message(error) -> list[str]:
    where = _where(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        unknown = [key for key in error.instance if key not in allowed
                   and not any(re.search(p, str(key)) for p in patterns)]
        prefix = "" if where == "(top level)" else where + "."
        return [f"{prefix}{key}: unknown key{_suggest(key, allowed)}"
                + ("" if _suggest(key, allowed) else f" (allowed: {', '.join(sorted(allowed))})")
                for key in unknown]
    if error.validator == "enum":
        # a model family the tool lacks: say where bringing one's own model is explained
        docs = (f"; see {OWN_MODEL_DOCS}" if list(error.absolute_path)[:1] == ["models"]
                and list(error.absolute_path)[-1:] == ["family"] else "")
        return [f"{where}: {error.instance!r} is not one of {error.validator_value}"
                f"{_suggest(error.instance, error.validator_value)}{docs}"]
    if error.validator in ("oneOf", "anyOf") and error.context:
        # the alternative that came closest (deepest path) says most
        best = max(error.context, key=lambda e: len(e.absolute_path))
        return _message(best)
    instance = repr(error.instance)
    message = error.message if len(instance) < 60 else error.message.replace(instance, "the value given")
    return [_short(f"{where}: {message}")]


def config_errors(config: dict, schema: dict | str | Path) -> list[str]:
    """One short line per schema violation in `config`, sorted by key (validated on a copy: defaults
    not filled)."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(_load(schema))
    return sorted({line for error in validator.iter_errors(copy.deepcopy(config)) for line in _message(error)})


def hub_patch_size(hub_id: str | None) -> int | None:
    """The patch size (CNN: total stride) a known hub id fixes, or None."""
    for pattern, size in HUB_PATCH:
        match = pattern.search(hub_id or "")
        if match:
            return int(match.group(1)) if size is None else size
    return None


def patch_size_errors(models: dict[str, dict]) -> list[str]:
    """Models whose configured image size is not a multiple of the patch size fixed by the config
    (a tiny build's `tiny.patch_size`) or by a known hub id."""
    errors = []
    for name, entry in models.items():
        tiny = entry.get("tiny") or {}
        patch = tiny.get("patch_size") if entry.get("source") == "tiny" else hub_patch_size(entry.get("hub_id"))
        if not patch:
            continue
        word = "total stride" if entry.get("family") == "resnet" else "patch size"
        for key, size in (("image_size", entry.get("image_size")), ("tiny.image_size", tiny.get("image_size"))):
            if size and size % patch:
                fix = ", ".join(str(n) for n in (size // patch * patch, (size // patch + 1) * patch) if n)
                source = "tiny.patch_size" if entry.get("source") == "tiny" else entry.get("hub_id")
                errors.append(f"models.{name}.{key}: {size} is not a multiple of the {word} {patch} "
                              f"({source}); try {fix}")
    return errors


def check_config(config: dict, schema: dict | str | Path) -> None:
    """Raise ValueError with at most MAX_ERRORS short lines if the config breaks the schema or a
    model's image size does not fit its patch grid."""
    lines = config_errors(config, schema)
    if not lines and isinstance(config.get("models"), dict):
        lines = patch_size_errors(config["models"])
    if lines:
        more = f"\n  ... and {len(lines) - MAX_ERRORS} more" if len(lines) > MAX_ERRORS else ""
        raise ValueError("config: " + ("\n  ".join(lines[:MAX_ERRORS]) if len(lines) == 1 else
                                       "\n  " + "\n  ".join(lines[:MAX_ERRORS])) + more)
