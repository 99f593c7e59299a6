"""Where a real preset's weights come from, resolved before anything renders.

Each component of a preset (`WeightSource`: base, streaming, enhancer, ...) is looked up, in
order, in `weights.paths.<component>` (a local folder/file, or a hub id) and else in the
preset's default hub id. Hub ids are resolved through the Hugging Face cache with
`huggingface_hub` (`snapshot_download`/`hf_hub_download`); downloading is allowed only when
`HF_HUB_OFFLINE` is unset or false, so an offline cluster fails fast with the list of what is
missing. Every missing component is collected into ONE `MissingWeightsError` that names it,
where to get it (hub id + file) and which setting points at it.

`weights.mode = random` resolves nothing: the caller builds full-size models with random
weights (profiling only; never real output).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stt2v_ray.presets import Preset, WeightSource


class MissingWeightsError(Exception):
    """Weights of one or more components could not be found; `missing` lists (source, reason)."""

    def __init__(self, preset: str, missing: list[tuple[WeightSource, str]]):
        self.preset = preset
        self.missing = missing
        lines = [f"preset {preset!r}: weights missing for {len(missing)} component(s):"]
        for src, reason in missing:
            if src.hub_id:
                where = f"get it from {src.hub_id}" + (f" (file {src.filename})" if src.filename else "")
            else:  # no hub copy: the description says where the file is published
                where = f"no hub copy of {src.filename or 'it'}: {src.description}"
            lines.append(f"  - {src.component}: {reason}; {where}; point {src.setting} at a local copy or hub id")
        lines.append("  (or run with --set weights.mode=random for full-size random weights: profiling only, not real output)")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ResolvedWeights:
    component: str
    path: Path  # a folder (diffusers repo) or a file (single checkpoint)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _looks_like_hub_id(value: str) -> bool:
    # "owner/name" with no path separators beyond the one slash and no local existence
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "/", "~"))


def resolve_one(src: WeightSource, override: str | None) -> ResolvedWeights:
    """One component -> a local path; raises FileNotFoundError with the reason."""
    target = override or src.hub_id
    if target is None:
        raise FileNotFoundError("no path set and no default hub id")
    local = Path(target).expanduser()
    if local.exists():
        if local.is_dir() and src.filename and (local / src.filename).is_file():
            local = local / src.filename
        return ResolvedWeights(src.component, local)
    if override and not _looks_like_hub_id(override):
        raise FileNotFoundError(f"{override!r} does not exist")
    return ResolvedWeights(src.component, _from_hub(target, src.filename))


def _from_hub(repo_id: str, filename: str | None) -> Path:
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
    except ImportError as exc:  # pragma: no cover - a dependency of diffusers
        raise FileNotFoundError(f"huggingface_hub is not installed ({exc})") from None
    offline = hub_offline()
    try:
        if filename:
            return Path(hf_hub_download(repo_id, filename, local_files_only=offline))
        return Path(snapshot_download(repo_id, local_files_only=offline))
    except Exception as exc:  # every hub failure (offline cache miss, 404, network) is "missing" here
        mode = "not in the Hugging Face cache (HF_HUB_OFFLINE is set)" if offline else "could not be downloaded"
        raise FileNotFoundError(f"{repo_id}{'/' + filename if filename else ''} {mode}: {type(exc).__name__}") from None


def resolve_weights(preset: Preset, paths: dict[str, str], components: list[str] | None = None) -> dict[str, ResolvedWeights]:
    """Resolve the named components (default: all of the preset's sources); MissingWeightsError lists every failure."""
    unknown = sorted(set(paths) - {s.component for s in preset.sources})
    if unknown:
        raise ValueError(
            f"weights.paths names unknown component(s) {unknown} for preset {preset.name!r}; "
            f"its components: {[s.component for s in preset.sources]}"
        )
    wanted = [s for s in preset.sources if components is None or s.component in components]
    found: dict[str, ResolvedWeights] = {}
    missing: list[tuple[WeightSource, str]] = []
    for src in wanted:
        try:
            found[src.component] = resolve_one(src, paths.get(src.component))
        except FileNotFoundError as exc:
            missing.append((src, str(exc).strip("'\"")))
    if missing:
        raise MissingWeightsError(preset.name, missing)
    return found


def components_for(preset: Preset, families: set[str], enhance: bool, interpolate: bool = True) -> list[str]:
    """The weight components a run needs: the families' generators, the enhancer if enabled, the
    interpolator if frames are interpolated (factor > 1)."""
    needed: list[str] = []
    for src in preset.sources:
        uses = SOURCE_USES.get(src.component, {"t2v", "i2v"})
        if uses & families or (enhance and "enhancer" in uses) or (interpolate and "interpolator" in uses):
            needed.append(src.component)
    return needed


# component -> what uses it (families, "enhancer", "interpolator"); unknown components: both families
SOURCE_USES: dict[str, set[str]] = {
    "base": {"t2v", "i2v"},
    "streaming": {"t2v", "i2v"},
    "image_encoder": {"t2v", "i2v"},
    "text_to_image": {"t2v"},
    "enhancer": {"enhancer"},
    "interpolator": {"interpolator"},
}
