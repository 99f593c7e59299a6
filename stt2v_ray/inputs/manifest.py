"""Prompt manifests: a YAML or JSON file with `settings`, `defaults` and `prompts`.

    settings: {enhance: {steps: 20}}        # run settings (validated against RunSettings)
    defaults: {num_frames: 96, fps: 24}     # applied under every entry
    prompts:
      - {id: cat, prompt: "a cat surfing"}
      - {prompt: "a dog", image: dog.png}  # relative to the manifest's folder
      - {prompt: "a bird"}                 # num_frames: the preset's default_num_frames

Images must lie inside the manifest's folder unless the user allows a prefix (see
stt2v_ray/inputs/images.py and docs/inputs.md); the manifest cannot set `settings.inputs` itself.
"""
from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

import fsspec
import yaml

from stt2v_ray.inputs.errors import InputIssue
from stt2v_ray.inputs.requests import FIELDS

TOP_LEVEL_KEYS = ("settings", "defaults", "prompts")


@dataclass
class Manifest:
    uri: str
    settings: dict[str, Any] = field(default_factory=dict)
    # (index in `prompts`, entry with the defaults applied) for every entry that is a mapping.
    entries: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    num_prompts: int = 0
    # Problems with the file itself or its structure; per-entry fields are checked later.
    issues: list[InputIssue] = field(default_factory=list)


def parse_text(text: str, uri: str) -> tuple[Any, list[InputIssue]]:
    """JSON for *.json, YAML otherwise (YAML also reads JSON, so unknown extensions work)."""
    if posixpath.splitext(uri)[1].lower() == ".json":
        try:
            return json.loads(text), []
        except json.JSONDecodeError as error:
            return None, [InputIssue(uri, f"line {error.lineno}, column {error.colno}", "", f"invalid JSON: {error.msg}")]
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        return None, [InputIssue(uri, where, "", f"invalid YAML: {problem}")]


def load_manifest(fs: fsspec.AbstractFileSystem, path: str, uri: str) -> Manifest:
    manifest = Manifest(uri)
    try:
        with fs.open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except UnicodeDecodeError as error:
        manifest.issues.append(InputIssue(uri, "", "", f"not UTF-8 text: {error}"))
        return manifest
    data, manifest.issues = parse_text(text, uri)
    if manifest.issues:
        return manifest
    issues = manifest.issues
    if not isinstance(data, dict):
        issues.append(InputIssue(uri, "", "", f"expected a mapping with keys {', '.join(TOP_LEVEL_KEYS)}; got {_kind(data)}"))
        return manifest

    for key in data:
        if key not in TOP_LEVEL_KEYS:
            issues.append(InputIssue(uri, "", str(key), f"unknown top-level key (expected one of: {', '.join(TOP_LEVEL_KEYS)})"))

    settings = data.get("settings") or {}
    if isinstance(settings, dict):
        manifest.settings = settings
    else:
        issues.append(InputIssue(uri, "settings", "", f"expected a mapping of run settings; got {_kind(settings)}"))

    defaults = data.get("defaults") or {}
    if isinstance(defaults, dict):
        defaults = dict(defaults)
    else:
        issues.append(InputIssue(uri, "defaults", "", f"expected a mapping of per-video fields; got {_kind(defaults)}"))
        defaults = {}
    for key in list(defaults):
        # Checked once here rather than once per entry.
        if key == "id":
            issues.append(InputIssue(uri, "defaults", "id", "ids must be unique: set them per entry, not in defaults"))
        elif key not in FIELDS:
            issues.append(InputIssue(uri, "defaults", str(key), f"unknown field (expected one of: {', '.join(sorted(FIELDS))})"))
        else:
            continue
        del defaults[key]

    prompts = data.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        got = "missing" if prompts is None else ("empty" if prompts == [] else f"got {_kind(prompts)}")
        issues.append(InputIssue(uri, "", "prompts", f"expected a non-empty list of prompt entries; {got}"))
        return manifest
    manifest.num_prompts = len(prompts)
    for index, entry in enumerate(prompts):
        if isinstance(entry, dict):
            manifest.entries.append((index, {**defaults, **entry}))
        else:
            issues.append(InputIssue(uri, f"prompts[{index}]", "", f"expected a mapping of per-video fields; got {_kind(entry)}"))
    return manifest


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
