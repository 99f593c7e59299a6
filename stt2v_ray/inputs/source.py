"""The one entry point for inputs: open a manifest or Parquet dataset by URI, validate, stream requests.

    source = open_input("s3://bucket/prompts/")
    issues = source.validate(["enhance.steps=20"])     # every problem, before rendering
    settings = source.settings(["enhance.steps=20"])   # RunSettings
    for request, extra in source.iter_requests(): ...
"""
from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any, Literal

import fsspec
import pyarrow as pa
from pydantic import ValidationError

from stt2v_ray.config import InputSettings, RunSettings, deep_merge, parse_override
from stt2v_ray.inputs.errors import InputError, InputIssue, IssueList, issues_from_validation
from stt2v_ray.inputs.ids import IdRegistry
from stt2v_ray.inputs.images import ImagePolicy, image_storage_options
from stt2v_ray.inputs.manifest import Manifest, load_manifest
from stt2v_ray.inputs.parquet import PARQUET_SUFFIXES, ParquetDataset
from stt2v_ray.inputs.requests import VideoRequest, check_id, request_from
from stt2v_ray.results import EXTRA_PREFIX, RESULT_COLUMNS
from stt2v_ray.storage import filesystem, parent_uri, protocol_of, redact_text, resolve_uri, storage_options_for, to_uri

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_ISSUES = 200  # listed in full; the rest are counted (a bad million-row dataset stays readable and small)


class InputSource:
    """A prompt manifest (kind "manifest") or a Parquet dataset (kind "parquet")."""

    def __init__(self, uri: str, kind: Literal["manifest", "parquet"], fs: fsspec.AbstractFileSystem, path: str,
                 storage_options: dict[str, Any], manifest: Manifest | None = None):
        self.uri, self.kind, self.storage_options = uri, kind, storage_options
        self._manifest: Manifest | None = None
        self._dataset: ParquetDataset | None = None
        self._default_num_frames: int | None = None  # the preset's, once settings are known
        if kind == "manifest":
            # `manifest`: one built in memory (inputs/direct.py: prompts and images from the command line).
            self._manifest = manifest if manifest is not None else load_manifest(fs, path, uri)
            self._base_dir = parent_uri(to_uri(fs, path))
        else:
            self._dataset = ParquetDataset(fs, path, uri)

    # ------------------------------------------------------------------ settings

    def image_roots(self) -> list[str]:
        """Where the input's own images live: the manifest's folder, or the dataset's folder/prefix."""
        return [self._base_dir_for_rows()]

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
        own = dict(self._manifest.settings) if self._manifest is not None else {}
        if "inputs" in own:
            # The manifest is what the policy guards against: it may not widen it for itself.
            del own["inputs"]
            issues.append(InputIssue(self.uri, "settings", "inputs", "a manifest cannot set its own image policy or "
                                     "caps: use --allow-image-uri or --set inputs.KEY=VALUE"))
        merged = deep_merge(deep_merge(base or {}, own), merged_overrides)
        # Parquet datasets carry no settings: every setting comes from --set.
        file = self.uri if self._manifest is not None else "--set"
        self._default_num_frames = _default_num_frames(merged.get("preset", "tiny"))
        try:
            return RunSettings.model_validate(merged), issues
        except ValidationError as error:
            return None, issues + issues_from_validation(error, RunSettings, file, "settings")

    def _input_settings(self, settings: RunSettings | None, overrides: list[str]) -> InputSettings:
        """The image policy and caps, also when other settings are invalid (then from --set inputs.* alone)."""
        if settings is not None:
            return settings.inputs
        merged: dict[str, Any] = {}
        for text in overrides:
            try:
                merged = deep_merge(merged, parse_override(text))
            except ValueError:
                pass
        try:
            return InputSettings.model_validate(merged.get("inputs") or {})
        except (ValidationError, TypeError):
            return InputSettings()

    # ------------------------------------------------------------------ validation

    def validate(self, overrides: list[str], base: dict[str, Any] | None = None) -> list[InputIssue]:
        """Every problem of every kind (settings, fields, ids, images, columns) in one pass over the rows.

        Parquet rows stream; memory holds the id digests and at most MAX_ISSUES issues (the rest are counted).
        """
        loaded = self._manifest.issues if self._manifest is not None else self._dataset.issues
        settings, setting_issues = self._settings(overrides, base)
        issues = IssueList(MAX_ISSUES, self.uri)
        issues.extend(list(loaded) + setting_issues)
        if self._dataset is not None and self._dataset.issues:
            return issues.listed()
        issues.extend(self._column_clashes())
        families = _families_of_preset(settings.preset) if settings is not None else None
        inputs = self._input_settings(settings, overrides)
        policy = ImagePolicy(tuple(self.image_roots()), tuple(inputs.allow_image_uris))
        ids = IdRegistry()
        images = _ImageChecker(self.uri, self.storage_options, policy, inputs.max_image_bytes)
        base_dir = self._base_dir_for_rows()
        for index, file, location, raw in self._raw_requests(with_extra=False):
            request, problems = request_from(raw, base_dir, file, location, self._default_num_frames)
            issues.extend(problems)
            # An entry with a field error still has its id and image checked: every error at once.
            video_id = request.id if request is not None else _explicit_id(raw)
            first = ids.add(video_id, index) if video_id else None
            if first is not None:
                first_file, first_location = self._location(first)
                where = first_location if first_file == file else f"{first_file}: {first_location}"
                issues.add(InputIssue(file, location, "id", f"duplicate id {video_id!r} (also used by {where})"))
            if request is not None:
                family = "i2v" if request.image is not None else "t2v"
                if families is not None and family not in families:
                    field = "image" if family == "i2v" else "prompt"
                    kind = "image" if family == "i2v" else "text"
                    issues.add(InputIssue(file, location, field, f"preset {settings.preset!r} has no "
                                          f"{kind}-to-video model (it has: {', '.join(families)})"))
            ref = raw.get("image")
            if isinstance(ref, str) and ref:
                problem = images.check(resolve_uri(base_dir, ref), ref)
                if problem:
                    issues.add(InputIssue(file, location, "image", problem))
        return issues.listed()

    def _column_clashes(self) -> list[InputIssue]:
        """Extra columns that results.parquet could not hold: `status` is written as `input_status`, so both clash."""
        if self._dataset is None:
            return []
        names = set(self._dataset.extra_schema.names)
        return [InputIssue(self.uri, "columns", name, f"column {name!r} is a results column, so it is kept as "
                           f"{EXTRA_PREFIX + name!r}, and the dataset already has a column {EXTRA_PREFIX + name!r}: rename one")
                for name in self._dataset.extra_schema.names if name in RESULT_COLUMNS and EXTRA_PREFIX + name in names]

    # ------------------------------------------------------------------ reading

    def iter_requests(self) -> Iterator[tuple[VideoRequest, dict[str, Any]]]:
        """(request, extra columns as Arrow scalars) in input order; run `validate` first."""
        loaded = self._manifest.issues if self._manifest is not None else self._dataset.issues
        if loaded:
            raise InputError(loaded)
        if self._default_num_frames is None:
            self._default_num_frames = _default_num_frames(self.preset_name([]))
        for _, file, location, raw, extra in self._raw_requests(with_extra=True):
            request, problems = request_from(raw, self._base_dir_for_rows(), file, location, self._default_num_frames)
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
    """The policy, then one existence and size check per allowed image, with a bounded cache of answers."""

    def __init__(self, input_uri: str, storage_options: dict[str, Any], policy: ImagePolicy, max_bytes: int):
        self._protocol, self._options = protocol_of(input_uri), storage_options
        self._policy, self._max_bytes = policy, max_bytes
        self._answers: dict[tuple[str, str], str] = {}

    def check(self, uri: str, ref: str) -> str:
        """'' when the image may be read and exists, else the problem."""
        key = (uri, ref)
        if key not in self._answers:
            if len(self._answers) >= 65536:  # keep memory flat on huge datasets
                self._answers.clear()
            # A refused URI is never handed to a filesystem: not opened, not listed, not probed.
            self._answers[key] = self._policy.refusal(uri, ref) or self._check(uri)
        return self._answers[key]

    def _check(self, uri: str) -> str:
        # The input's own storage options apply to images on the same protocol.
        same = protocol_of(uri) == self._protocol
        shown = redact_text(uri)
        try:
            fs, path = filesystem(uri, image_storage_options(uri, self._options if same else storage_options_for(uri, None)))
            try:
                info = fs.info(path)
            except FileNotFoundError:
                return f"image not found: {shown}"
            if info.get("type") == "directory":
                return f"image is a folder, not a file: {shown}"
            size = info.get("size")
            if size is not None and size > self._max_bytes:
                return f"image {shown} is {size} bytes, more than inputs.max_image_bytes ({self._max_bytes})"
            return ""
        except Exception as error:  # noqa: BLE001 - any backend failure is reported, not raised
            return f"cannot check image {shown}: {type(error).__name__}: {redact_text(str(error))}"


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


def _explicit_id(raw: dict[str, Any]) -> str | None:
    """The id an entry names, when it is a valid id, even if other fields of the entry are not."""
    value = raw.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    try:
        return check_id(value)
    except ValueError:
        return None


def _default_num_frames(preset_name: Any) -> int:
    from stt2v_ray.presets import PRESETS

    # An unknown preset is reported as such; the default one's frame count avoids a second, misleading error.
    preset = PRESETS.get(preset_name) if isinstance(preset_name, str) else None
    return (preset or PRESETS["tiny"]).default_num_frames


def _families_of_preset(name: str) -> list[str] | None:
    from stt2v_ray.presets import PRESETS

    preset = PRESETS.get(name)
    return list(preset.generators) if preset is not None else None
