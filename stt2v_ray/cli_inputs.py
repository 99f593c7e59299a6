"""What `render`/`validate` read from the command line: the input (or prompts), the flags, the settings.

Light imports only: `stt2v-ray --help` must not load torch.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from stt2v_ray.aliases import memopt_overrides, resolve, setting_overrides
from stt2v_ray.config import parse_override
from stt2v_ray.inputs.errors import InputError, InputIssue
from stt2v_ray.inputs.source import InputSource

DRY_RUN_ROWS = 200  # videos listed by --dry-run; the rest are counted (all of them are validated)


def open_cli_input(args: argparse.Namespace, options: dict[str, Any]) -> tuple[str, InputSource, list[str], str | None]:
    """(input label, opened source, --set overrides incl. the flags' settings, output) of a render/validate call.

    Raises FlagConflict (two values for one setting) and InputError (no input, flags that do not apply).
    """
    from stt2v_ray.inputs.direct import VideoFlags, default_num_frames, open_direct
    from stt2v_ray.inputs.source import open_input
    from stt2v_ray.storage import storage_options_for

    resolved = resolve(args.flags, args.input, getattr(args, "output", None), args.overrides)
    for note in resolved.notes:
        print(note, file=sys.stderr)
    flags = VideoFlags(prompts=tuple(args.prompts), default_num_frames=default_num_frames(_preset(args.overrides)),
                       **resolved.video)
    uri = resolved.input
    if uri is None and not flags.prompts:
        raise InputError([InputIssue("INPUT", "", "", "give an input (a manifest, a Parquet dataset, an image or a "
                                                      "folder of images) or at least one --prompt")])
    source = open_direct(uri, flags, options)
    if source is None:
        source = open_input(uri, storage_options_for(uri, options))
    overrides = list(args.overrides) + setting_overrides(resolved)
    if resolved.memopt:
        overrides += _memopt(source, overrides)
    return uri or "--prompt", source, overrides, resolved.output


def _preset(overrides: list[str]) -> str:
    """The preset named by --set (command-line inputs have no manifest to name one): 'tiny' when unnamed."""
    name: Any = "tiny"
    for text in overrides:
        try:
            name = parse_override(text).get("preset", name)
        except ValueError:
            pass  # reported by validation
    return name if isinstance(name, str) else "tiny"


def _memopt(source: InputSource, overrides: list[str]) -> list[str]:
    """The --use_memopt bundle for the run's preset and device (half precision: float16 on CUDA, bfloat16 on CPU)."""
    from stt2v_ray.presets import memopt_settings
    from stt2v_ray.run import preset_base

    name = source.preset_name(overrides)
    try:
        device = source.settings(overrides, base=preset_base(source, overrides)).device
    except InputError:
        device = "auto"  # the settings' own problems are reported by validation
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    bundle = memopt_settings(name, cuda=device == "cuda")
    if not bundle:
        print(f"note: --use_memopt: preset {name!r} reads no memory settings; nothing set", file=sys.stderr)
        return []
    sets = memopt_overrides(bundle, overrides)
    print(f"note: --use_memopt stands for {' '.join('--set ' + s for s in sets)} (device {device})", file=sys.stderr)
    return sets


def dry_run(label: str, source: InputSource, overrides: list[str], options: dict[str, Any], output: str | None) -> int:
    """Validate everything, then print the videos and the resolved settings; render nothing, start no Ray."""
    from stt2v_ray.run import load_and_validate

    source, settings = load_and_validate(label, overrides, options, source)
    total = source.count()
    rows = []
    for request, _ in source.iter_requests():
        if len(rows) == DRY_RUN_ROWS:
            break
        fps = request.fps if request.fps is not None else f"{settings.encode.default_fps}*"
        rows.append([request.id, request.num_frames, fps, request.seed] +
                    [_quoted(v) for v in (request.image, request.prompt, request.negative_prompt)])
    header = ["id", "num_frames", "fps", "seed", "image", "prompt", "negative_prompt"]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header) - 1)]
    where = f" into {output}" if output else ""
    print(f"{label}: {total} video(s) would be rendered{where} (dry run: nothing rendered, nothing started)")
    for row in [header] + rows:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(row[:-1], widths, strict=True)) + "  " + str(row[-1]))
    if total > len(rows):
        print(f"  ... and {total - len(rows)} more (all validated)")
    if any(str(r[2]).endswith("*") for r in rows):
        print("  * fps not set: encode.default_fps")
    print("settings:")
    dumped = yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False, default_flow_style=False)
    print("".join("  " + line + "\n" for line in dumped.splitlines()), end="")
    return 0


def _quoted(text: str | None) -> str:
    # Quoted (JSON) so that texts with spaces stay one column; '-' when not set.
    return json.dumps(text, ensure_ascii=False) if text else "-"
