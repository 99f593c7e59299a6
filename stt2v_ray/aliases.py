"""Per-video flags and the original StreamingT2V's flags, mapped onto inputs, per-video fields and settings.

Each flag targets one of: a per-video field ("video.num_frames"), a run setting
("enhance.chunk_frames", given to `--set`), the input or the output, or the --use_memopt
bundle. One target set twice to different values (by two flags, a flag given twice, or a
flag and a `--set`) is an error naming both. A flag spelled as the original spells it prints
once, on stderr, what it stands for.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stt2v_ray.config import parse_override


def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


@dataclass(frozen=True)
class Flag:
    name: str
    target: str  # "video.<field>", "input", "output", "memopt", or a dotted setting key
    original: bool  # spelled as the original's inference.py / inference_i2v.py spells it
    parse: Callable[[str], Any]
    help: str
    to_setting: Callable[[Any], Any] = lambda value: value
    nargs: str | int | None = None  # "?": a bare flag means `const` (the original's BooleanOptionalAction); 0: --no-X
    const: Any = None


def _blending(on: bool) -> str:
    return "randomized" if on else "none"


FLAGS: tuple[Flag, ...] = (
    Flag("--num-frames", "video.num_frames", False, int, "exact frame count of each MP4 (default 200)"),
    Flag("--fps", "video.fps", False, int, "frames per second of each MP4 (default: encode.default_fps)"),
    Flag("--seed", "video.seed", False, int, "seed of every random draw of each video (default 0)"),
    Flag("--negative-prompt", "video.negative_prompt", False, str, "negative prompt of each video"),
    Flag("--num_frames", "video.num_frames", True, int, "= --num-frames (inference.py, inference_i2v.py)"),
    Flag("--out_fps", "video.fps", True, int, "= --fps: fps of the final MP4, after interpolation (inference_i2v.py)"),
    Flag("--negative_prompt", "video.negative_prompt", True, str, "= --negative-prompt (inference.py)"),
    Flag("--chunk_size", "enhance.chunk_frames", True, int, "= --set enhance.chunk_frames (inference_i2v.py)"),
    Flag("--chunk", "enhance.chunk_frames", True, int, "= --set enhance.chunk_frames (inference.py)"),
    Flag("--overlap_size", "enhance.overlap_frames", True, int, "= --set enhance.overlap_frames (inference_i2v.py)"),
    Flag("--overlap", "enhance.overlap_frames", True, int, "= --set enhance.overlap_frames (inference.py)"),
    Flag("--use_randomized_blending", "enhance.blending", True, parse_bool,
         "[True|False]: --set enhance.blending=randomized|none (inference_i2v.py)", _blending, "?", True),
    Flag("--no-use_randomized_blending", "enhance.blending", True, parse_bool, "= --set enhance.blending=none",
         _blending, 0, False),
    Flag("--use_memopt", "memopt", True, parse_bool,
         "[True|False]: the original's memory optimisations, as --set memory.dtype=float16 (bfloat16 on CPU) "
         "memory.cpu_offload=true memory.ff_chunk_size=2 memory.vae_decode_chunk=4 memory.sequential_cfg=true "
         "(presets streamingsvd*, streamingt2v*; others read no memory settings)",
         nargs="?", const=True),
    Flag("--no-use_memopt", "memopt", True, parse_bool, "= --use_memopt False (the default)", nargs=0, const=False),
    Flag("--num_steps", "t2v.steps", True, int, "= --set t2v.steps: denoising steps of the streaming pass (inference.py)"),
    Flag("--image_guidance", "t2v.guidance_scale", True, float,
         "= --set t2v.guidance_scale: CFG of the streaming pass (inference.py)"),
    Flag("--device", "device", True, str, "= --set device (cuda, cpu or auto; inference.py)"),
    Flag("--input", "input", True, str, "= the INPUT argument (inference_i2v.py)"),
    Flag("--image", "input", True, str, "= the INPUT argument: an image to animate (inference.py --base_model SVD)"),
    Flag("--output_dir", "output", True, str, "= --output (inference.py)"),
)
_BY_NAME = {f.name: f for f in FLAGS}
VIDEO_FIELDS = ("num_frames", "fps", "seed", "negative_prompt")


class _Record(argparse.Action):
    """Keeps every occurrence (flag, value), so two values for one target can be reported, not overwritten."""

    def __call__(self, parser, namespace, values, option_string=None):
        flag = _BY_NAME[option_string]
        value = flag.const if flag.nargs is not None and values in (None, []) else values
        occurrences = list(getattr(namespace, self.dest) or [])
        occurrences.append((option_string, value))
        setattr(namespace, self.dest, occurrences)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """--output, the per-video flags and the original's flags, recorded in `args.flags`."""
    video = parser.add_argument_group("per-video fields (prompts, an image or a folder of images given here)")
    video.add_argument("--prompt", dest="prompts", action="append", default=[], metavar="TEXT",
                       help="text prompt; without INPUT one video per --prompt (repeatable); with an image "
                            "or folder, the prompt of every image")
    original = parser.add_argument_group(
        "the original StreamingT2V's flags", "Each prints (stderr) what it stands for. One setting or field given two "
        "different values (two spellings, a flag twice, or a flag and --set) is an error naming both.")
    for flag in FLAGS:
        group = video if not flag.original else original
        kwargs: dict[str, Any] = {"type": flag.parse, "help": flag.help, "dest": "flags", "action": _Record}
        if flag.nargs == 0:
            kwargs = {"help": flag.help, "dest": "flags", "action": _Record, "nargs": 0}
        elif flag.nargs:
            kwargs.update(nargs=flag.nargs, metavar="BOOL")
        else:
            kwargs["metavar"] = flag.name.lstrip("-").replace("-", "_").upper()
        group.add_argument(flag.name, **kwargs)
    parser.set_defaults(flags=None)


@dataclass
class Resolved:
    input: str | None = None
    output: str | None = None
    video: dict[str, Any] = field(default_factory=dict)  # per-video fields by name
    settings: dict[str, tuple[str, Any]] = field(default_factory=dict)  # key -> (flag, setting value)
    memopt: bool = False
    notes: list[str] = field(default_factory=list)


class FlagConflict(ValueError):
    """Two values for one target; `problems` names both of each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _shown(flag: str, value: Any) -> str:
    if flag == "INPUT":
        return f"INPUT {value}"
    spec = _BY_NAME.get(flag)
    if spec is not None and spec.nargs is not None:
        return flag if value == spec.const else f"{flag} {value}"
    return f"{flag} {value}"


def resolve(occurrences: list[tuple[str, Any]] | None, positional_input: str | None, output: str | None,
            overrides: list[str]) -> Resolved:
    """Group the flags by target; check them against each other and against `--set` (FlagConflict)."""
    by_target: dict[str, list[tuple[str, Any]]] = {}
    if positional_input is not None:
        by_target.setdefault("input", []).append(("INPUT", positional_input))
    if output is not None:
        by_target.setdefault("output", []).append(("--output", output))
    for name, value in occurrences or []:
        by_target.setdefault(_BY_NAME[name].target, []).append((name, value))
    given = _flatten_sets(overrides)
    problems: list[str] = []
    out = Resolved()
    for target, values in by_target.items():
        first_flag, first = values[0]
        for flag, value in values[1:]:
            if value != first:
                problems.append(f"{_shown(first_flag, first)} and {_shown(flag, value)} both set {target.removeprefix('video.')}")
                break
        spec = _BY_NAME.get(first_flag)
        if target in ("input", "output"):
            setattr(out, target, first)
        elif target == "memopt":
            out.memopt = bool(first)
        elif target.startswith("video."):
            out.video[target.removeprefix("video.")] = first
        else:
            value = spec.to_setting(first)
            if target in given and given[target] != value:
                problems.append(f"{_shown(first_flag, first)} and --set {target}={given[target]} both set {target}")
            out.settings[target] = (first_flag, value)
        for flag, value in values:
            spec = _BY_NAME.get(flag)
            if spec is not None and spec.original and spec.target != "memopt":  # memopt: said once resolved
                note = _note(spec, value)
                if note not in out.notes:
                    out.notes.append(note)
    if problems:
        raise FlagConflict(problems)
    return out


def _note(spec: Flag, value: Any) -> str:
    said = _shown(spec.name, value)
    if spec.target == "input":
        return f"note: {said} is the INPUT argument"
    if spec.target == "output":
        return f"note: {said} is --output {value}"
    if spec.target.startswith("video."):
        canonical = next(f.name for f in FLAGS if f.target == spec.target and not f.original)
        return f"note: {said} stands for {canonical} {value} (each video's {spec.target.removeprefix('video.')})"
    return f"note: {said} stands for --set {spec.target}={spec.to_setting(value)}"


def memopt_overrides(bundle: dict[str, Any], overrides: list[str]) -> list[str]:
    """`--set` strings of the --use_memopt bundle; FlagConflict when a `--set memory.*` disagrees."""
    given = _flatten_sets(overrides)
    problems = [f"--use_memopt and --set memory.{k}={given['memory.' + k]} both set memory.{k} (--use_memopt: {v}); "
                f"give the memory.* settings one by one with --set instead"
                for k, v in bundle.items() if f"memory.{k}" in given and given[f"memory.{k}"] != v]
    if problems:
        raise FlagConflict(problems)
    return [f"memory.{k}={_yaml(v)}" for k, v in bundle.items()]


def setting_overrides(resolved: Resolved) -> list[str]:
    return [f"{key}={_yaml(value)}" for key, (_, value) in resolved.settings.items()]


def _yaml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _flatten_sets(overrides: list[str]) -> dict[str, Any]:
    """dotted key -> value of every parsable `--set` (the last one wins, as when settings are merged)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = value

    for text in overrides:
        try:
            walk("", parse_override(text))
        except ValueError:
            pass  # reported by validation, with the other settings problems
    return flat
