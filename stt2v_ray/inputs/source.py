"""The one entry point for inputs: open a manifest or Parquet dataset by URI, validate, stream requests.

    source = open_input("s3://bucket/prompts/")
    issues = source.validate(["enhance.steps=20"])     # every problem, before rendering
    settings = source.settings(["enhance.steps=20"])   # RunSettings
    for request, extra in source.iter_requests(): ...
"""
from __future__ import annotations

import posixpath
from typing import Any, Iterator, Literal

import fsspec
import pyarrow as pa
from pydantic import ValidationError

from stt2v_ray.config import RunSettings, deep_merge, parse_override
from stt2v_ray.inputs.errors import InputError, InputIssue, issues_from_validation
from stt2v_ray.inputs.ids import IdRegistry
from stt2v_ray.inputs.manifest import Manifest, load_manifest
from stt2v_ray.inputs.parquet import PARQUET_SUFFIXES, ParquetDataset
from stt2v_ray.inputs.requests import VideoRequest, request_from
from stt2v_ray.storage import filesystem, parent_uri, protocol_of, storage_options_for, to_uri

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class InputSource:
    """A prompt manifest (kind "manifest") or a Parquet dataset (kind "parquet")."""

    def __init__(self, uri: str, kind: Literal["manifest", "parquet"], fs: fsspec.AbstractFileSystem, path: str,
                 storage_options: dict[str, Any], manifest: Manifest | None = None):
        self.uri, self.kind, self.storage_options = uri, kind, storage_options
        self._manifest: Manifest | None = None
        self._dataset: ParquetDataset | None = None
        if kind == "manifest":
            # `manifest`: one built in memory (inputs/direct.py: prompts and images from the command line).
            self._manifest = manifest if manifest is not None else load_manifest(fs, path, uri)
            self._base_dir = parent_uri(to_uri(fs, path))
        else:
            self._dataset = ParquetDataset(fs, path, uri)

    # ------------------------------------------------------------------ settings

    def settings(self, overrides: list[str], base: dict[str, Any] | None = None) -> RunSettings:
        """`base` (preset defaults) < the manifest's `settings` < `--set` overrides."""
        settings, issues = self._settings(overrides, base)
        if self._manifest is not None:
            issues = self._manifest.issues + issues
        if issues:
            raise InputError(issues)
        return settings

    def preset_name(self, overrides: list[str]) -> str:
        """The preset the manifest and overrides ask for (unvalidated: 'tiny' when unnamed)."""
        name = (self._manifest.settings if self._manifest is not None else {}).get("preset", "tiny")
        for text in overrides:
            try:
                name = parse_override(text).get("preset", name)
            except ValueError:
                pass
        return name if isinstance(name, str) else "tiny"

    def _settings(self, overrides: list[str], base: dict[str, Any] | None) -> tuple[RunSettings | None, list[InputIssue]]:
        issues: list[InputIssue] = []
        merged_overrides: dict[str, Any] = {}
        for text in overrides:
            try:
                merged_overrides = deep_merge(merged_overrides, parse_override(text))
            except ValueError as error:
                issues.append(InputIssue("--set", "settings", "", str(error)))
        own = self._manifest.settings if self._manifest is not None else {}
        merged = deep_merge(deep_merge(base or {}, own), merged_overrides)
        # Parquet datasets carry no settings: every setting comes from --set.
        file = self.uri if self._manifest is not None else "--set"
        try:
            return RunSettings.model_validate(merged), issues
        except ValidationError as error:
            return None, issues + issues_from_validation(error, RunSettings, file, "settings")

    # ------------------------------------------------------------------ validation

    def validate(self, overrides: list[str], base: dict[str, Any] | None = None) -> list[InputIssue]:
        """Every problem of the input and its settings (streams Parquet datasets once)."""
        loaded = self._manifest.issues if self._manifest is not None else self._dataset.issues
        settings, setting_issues = self._settings(overrides, base)
        issues = list(loaded) + setting_issues
        if self._dataset is not None and self._dataset.issues:
            return issues
        families = _families_of_preset(settings.preset) if settings is not None else None
        ids = IdRegistry()
        images = _ImageChecker(self.uri, self.storage_options)
        for index, file, location, raw in self._raw_requests(with_extra=False):
            request, problems = request_from(raw, self._base_dir_for_rows(), file, location)
            issues += problems
            if request is None:
                continue
            first = ids.add(request.id, index)
            if first is not None:
                first_file, first_location = self._location(first)
                where = first_location if first_file == file else f"{first_file}: {first_location}"
                issues.append(InputIssue(file, location, "id", f"duplicate id {request.id!r} (also used by {where})"))
            family = "i2v" if request.image is not None else "t2v"
            if families is not None and family not in families:
                field = "image" if family == "i2v" else "prompt"
                issues.append(InputIssue(file, location, field, f"preset {settings.preset!r} has no "
                                         f"{'image' if family == 'i2v' else 'text'}-to-video model (it has: {', '.join(families)})"))
            if request.image is not None:
                problem = images.check(request.image)
                if problem:
                    issues.append(InputIssue(file, location, "image", problem))
        return issues

    # ------------------------------------------------------------------ reading

    def iter_requests(self) -> Iterator[tuple[VideoRequest, dict[str, Any]]]:
        """(request, extra columns as Arrow scalars) in input order; run `validate` first."""
        loaded = self._manifest.issues if self._manifest is not None else self._dataset.issues
        if loaded:
            raise InputError(loaded)
        for _, file, location, raw, extra in self._raw_requests(with_extra=True):
            request, problems = request_from(raw, self._base_dir_for_rows(), file, location)
            if problems:
                raise InputError(problems)
            yield request, extra

    def count(self) -> int:
        """Number of videos (Parquet: from the file footers, without reading rows)."""
        return self._manifest.num_prompts if self._manifest is not None else self._dataset.count()

    def extra_schema(self) -> pa.Schema:
        """Types of the pass-through columns (empty for manifests)."""
        return self._dataset.extra_schema if self._dataset is not None else pa.schema([])

    def _base_dir_for_rows(self) -> str:
        return self._base_dir if self._manifest is not None else self._dataset.base_dir

    def _location(self, index: int) -> tuple[str, str]:
        if self._manifest is not None:
            return self.uri, f"prompts[{index}]"
        return self._dataset.location(index)

    def _raw_requests(self, with_extra: bool) -> Iterator[tuple]:
        """(index, file, location, raw fields[, extra]) of every entry or row."""
        if self._manifest is not None:
            for index, entry in self._manifest.entries:
                row = (index, self.uri, f"prompts[{index}]", entry)
                yield row + ({},) if with_extra else row
            return
        for r in self._dataset.rows(with_extra=with_extra):
            row = (r.index, r.file, f"row {r.index}", r.fields)
            yield row + (r.extra,) if with_extra else row


class _ImageChecker:
    """One existence check per referenced image, with a bounded cache of answers."""

    def __init__(self, input_uri: str, storage_options: dict[str, Any]):
        self._protocol, self._options = protocol_of(input_uri), storage_options
        self._answers: dict[str, str] = {}

    def check(self, uri: str) -> str:
        """'' when the image exists, else the problem."""
        if uri not in self._answers:
            if len(self._answers) >= 65536:  # keep memory flat on huge datasets
                self._answers.clear()
            self._answers[uri] = self._check(uri)
        return self._answers[uri]

    def _check(self, uri: str) -> str:
        # The input's own storage options apply to images on the same protocol.
        same = protocol_of(uri) == self._protocol
        try:
            fs, path = filesystem(uri, self._options if same else storage_options_for(uri, None))
            if fs.isfile(path):
                return ""
            return f"image is a folder, not a file: {uri}" if fs.exists(path) else f"image not found: {uri}"
        except Exception as error:  # noqa: BLE001 - any backend failure is reported, not raised
            return f"cannot check image {uri}: {type(error).__name__}: {error}"


def open_input(uri: str, storage_options: dict[str, Any] | None = None) -> InputSource:
    """Open a manifest (.yaml/.yml/.json) or a Parquet dataset (file, folder, any fsspec URI)."""
    options = storage_options_for(uri, storage_options)
    fs, path = filesystem(uri, options)
    # fsspec shares filesystem instances per process: drop listings cached by an earlier
    # open (all of them: a folder's cached sub-listings would hide new or deleted files).
    fs.invalidate_cache()
    if not fs.exists(path):
        raise InputError([InputIssue(uri, "", "", "no such file or folder")])
    suffix = posixpath.splitext(path.rstrip("/"))[1].lower()
    if suffix in MANIFEST_SUFFIXES:
        kind = "manifest"
    elif suffix in PARQUET_SUFFIXES or fs.isdir(path):
        kind = "parquet"
    else:
        with fs.open(path, "rb") as f:
            kind = "parquet" if f.read(4) == b"PAR1" else "manifest"
    return InputSource(uri, kind, fs, path, options)


def _families_of_preset(name: str) -> list[str] | None:
    from stt2v_ray.presets import PRESETS

    preset = PRESETS.get(name)
    return list(preset.generators) if preset is not None else None
