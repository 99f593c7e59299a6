"""Generate docs/settings.md from the pydantic run settings (`stt2v_ray.config.RunSettings`).

One section per settings model, in field order, each row a dotted key with its type (and
bounds), its default and its description. Imports only `stt2v_ray.config`: no Ray, no models.

    python -m stt2v_ray.settings_doc docs/settings.md           # (re)write the file
    python -m stt2v_ray.settings_doc --check docs/settings.md   # exit 1 when it is stale
"""
from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from stt2v_ray.config import RunSettings

COMMAND = "python -m stt2v_ray.settings_doc docs/settings.md"
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "settings.md"

HEADER = f"""\
# Run settings

<!-- Generated from stt2v_ray/config.py by `{COMMAND}`; do not edit by hand. -->

Every key of `RunSettings`, the settings of one run. They are layered, lowest first: the
defaults below, the preset's defaults (`stt2v-ray presets` prints them), the manifest's
`settings:` mapping, then `--set key=value` on the command line (repeatable; the value is
parsed as YAML). Every level is validated by the same models, and an unknown key is an
error. Nested keys are dotted on the command line (`--set ray.base.num_gpus=1`) and nested
mappings in a manifest (`settings: {{ray: {{base: {{num_gpus: 1}}}}}}`).

The defaults here are the fields' own, before any preset's; every preset replaces many of
them (its steps, frame sizes, chunk lengths). Some keys are checked together, for example
`cond_frames < chunk_frames` and `enhance.overlap_frames <= enhance.chunk_frames / 2`; the
error names both values.
"""

_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _type_name(ann: object) -> str:
    """`int`, `str | None`, `"a" | "b"`, `dict[str, float]`: how a user writes the value."""
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(v) for v in typing.get_args(ann))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(ann))
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in typing.get_args(ann))}]"
    return getattr(ann, "__name__", str(ann))


def _type_cell(field: FieldInfo) -> str:
    bounds = [f"{op} {getattr(m, attr)}" for m in field.metadata for attr, op in _BOUNDS if hasattr(m, attr)]
    name = _type_name(field.annotation)
    return f"`{name}`" + (f" ({', '.join(bounds)})" if bounds else "")


def _default_cell(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _is_model(ann: object) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _sections(model: type[BaseModel], prefix: str, description: str) -> list[tuple[str, str, list[list[str]]]]:
    """(section key, its description, rows) for `model` and, after it, every nested model."""
    rows: list[list[str]] = []
    nested: list[tuple[str, str, list[list[str]]]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if _is_model(field.annotation):
            doc = field.description or (field.annotation.__dict__.get("__doc__") or "").strip()
            nested += _sections(field.annotation, f"{key}.", doc)
        else:
            rows.append([f"`{key}`", _type_cell(field), _default_cell(field), _cell(field.description or "")])
    return [(prefix.rstrip("."), description, rows), *nested] if rows else nested


def render() -> str:
    """The whole of docs/settings.md, as text."""
    out = [HEADER]
    for key, description, rows in _sections(RunSettings, "", ""):
        out.append(f"## `{key}`" if key else "## Run")
        out.append("")
        if description:
            out += [_cell(description), ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stt2v_ray.settings_doc", description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help="the file to write (default: docs/settings.md)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file is not what would be written")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else None
        if current != text:
            print(f"{args.path} is stale: regenerate it with `{COMMAND}`", file=sys.stderr)
            return 1
        print(f"{args.path}: up to date")
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text, encoding="utf-8")
    print(f"{args.path}: written ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
