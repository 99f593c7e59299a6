"""Profile one render of a preset: seconds and peak GPU memory per stage and per unit of work, as JSON.

    .venv/bin/python benchmarks/gpu_profile.py --preset streamingsvd --frames 49 [--memopt] [--weights random]
    .venv/bin/python benchmarks/gpu_profile.py --preset streamingt2v-toy --frames 9 --device cpu --json out.json

Renders with the reference pipeline (`render_video`, one process, no Ray) into a temporary
folder. Every span the pipeline already records (base chunk k, enhancer chunk/step and decode,
interpolation and encoding pieces) is measured: wall seconds, with `torch.cuda.synchronize()`
before each clock read on CUDA so queued kernels are counted where they run, and the peak of
`torch.cuda.max_memory_allocated()` during the span (reset at its start). Model building is
measured separately (`build`). On CPU the memory fields are null: torch has no allocator peak
there, and process RSS would mix in Python and ffmpeg.

`--weights random` (default) builds a real preset at full size with random weights: the
timings and memory are the real networks', the frames are noise (never real output).
`--weights pretrained` resolves the preset's weights first and exits 2 naming each missing one.
`--memopt` turns on what the preset's generators support (MEMOPT below); `--set` overrides last.
JSON goes to stdout (and `--json OUT`), a short table to stderr.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from stt2v_ray.config import RunSettings, deep_merge, parse_override  # noqa: E402
from stt2v_ray.inputs.requests import VideoRequest  # noqa: E402
from stt2v_ray.models.blocks.weights import MissingWeightsError, components_for, resolve_weights  # noqa: E402
from stt2v_ray.pipeline.components import Components  # noqa: E402
from stt2v_ray.pipeline.video import STAGES, StageClock, render_video  # noqa: E402
from stt2v_ray.presets import get_preset  # noqa: E402

MIB = 2**20

# Memory settings each generator family supports (stt2v_ray/models/blocks/memory.py, streamingsvd.py,
# streamingt2v.py: each module's docstring gives the knobs' expected effects). Half precision is
# float16 on CUDA, bfloat16 on CPU (CPUs have no fast float16). ff_chunk_size 2 and
# vae_decode_chunk 4 are the original's --use_memopt values.
_ALL = {"dtype": "half", "cpu_offload": True, "ff_chunk_size": 2, "vae_decode_chunk": 4, "sequential_cfg": True}
MEMOPT = {"streamingsvd": _ALL, "streamingt2v": _ALL, "tiny": {}}
MEMOPT_NOT_APPLIED = {
    "streamingsvd": {}, "streamingt2v": {},
    "tiny": {k: "the tiny preset's builders take no memory settings" for k in _ALL},
}


def preset_kind(name: str) -> str:
    """streamingsvd(-toy) / streamingt2v(-toy) / tiny, from the module of the preset's generators."""
    modules = " ".join(get_preset(name).generators.values())
    for kind in ("streamingsvd", "streamingt2v"):
        if f".{kind}:" in modules:  # stt2v_ray.models.<family>.<kind>:<builder>
            return kind
    return "tiny"


def memopt_settings(preset: str, device: torch.device) -> dict:
    mem = dict(MEMOPT[preset_kind(preset)])
    if mem.get("dtype") == "half":
        mem["dtype"] = "float16" if device.type == "cuda" else "bfloat16"
    return mem


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class ProfilingClock:
    """Wraps a StageClock: each span also records wall seconds and its peak GPU memory.

    Spans may nest; peaks stay right because, before any reset, the allocator's peak so far is
    folded into every open span (and the overall peak)."""

    def __init__(self, inner: StageClock, device: torch.device):
        self.inner, self.cuda = inner, device.type == "cuda"
        self.rows: list[dict] = []
        self.open: list[dict] = []
        self.overall_peak = 0

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def fold(self) -> None:
        if self.cuda:
            peak = torch.cuda.max_memory_allocated()
            for row in self.open:
                row["_peak"] = max(row["_peak"], peak)
            self.overall_peak = max(self.overall_peak, peak)

    def __call__(self, stage: str, unit: str):
        return _ProfiledSpan(self, stage, unit)


class _ProfiledSpan:
    def __init__(self, clock: ProfilingClock, stage: str, unit: str):
        self.clock, self.stage, self.unit = clock, stage, unit

    def __enter__(self):
        c = self.clock
        c.sync()
        c.fold()
        if c.cuda:
            torch.cuda.reset_peak_memory_stats()
        self.row = {"stage": self.stage, "unit": self.unit, "_peak": 0}
        c.open.append(self.row)
        self.span = c.inner(self.stage, self.unit)
        self.span.__enter__()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        c = self.clock
        c.sync()
        seconds = time.perf_counter() - self.start
        c.fold()
        c.open.remove(self.row)
        peak = self.row.pop("_peak")
        self.row.update(seconds=seconds, peak_mib=round(peak / MIB, 1) if c.cuda else None)
        c.rows.append(self.row)
        return self.span.__exit__(*exc)


def test_image(path: Path, height: int, width: int) -> str:
    """A deterministic picture with structure (gradient + disc), so the encoders see edges."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), np.full_like(x, 96.0)], axis=-1)
    disc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(height, width) / 4) ** 2
    rgb[disc] = (240, 240, 240)
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return str(path)


def build_settings(args) -> tuple[RunSettings, dict, dict]:
    preset = get_preset(args.preset)
    mapping = deep_merge(preset.defaults, {"preset": args.preset, "device": args.device, "executor": "local",
                                           "weights": {"mode": args.weights}})
    applied, not_applied = {}, {}
    if args.memopt:
        from stt2v_ray.pipeline.components import resolve_device

        applied = memopt_settings(args.preset, resolve_device(args.device))
        not_applied = MEMOPT_NOT_APPLIED[preset_kind(args.preset)]
        mapping = deep_merge(mapping, {"memory": applied})
    for text in args.set:
        mapping = deep_merge(mapping, parse_override(text))
    return RunSettings.model_validate(mapping), applied, not_applied


def stage_totals(rows: list[dict], cuda: bool) -> dict:
    totals: dict[str, dict] = {}
    for stage in [s for s in STAGES if any(r["stage"] == s for r in rows)]:
        mine = [r for r in rows if r["stage"] == stage]
        peak = max(r["peak_mib"] for r in mine) if cuda else None
        totals[stage] = {"seconds": round(sum(r["seconds"] for r in mine), 4), "peak_mib": peak, "units": len(mine)}
    return totals


def profile(args) -> dict:
    settings, applied, not_applied = build_settings(args)
    preset = get_preset(settings.preset)
    family = args.family if args.family != "auto" else "i2v" if args.image or "i2v" in preset.generators else "t2v"
    if args.image and family != "i2v":
        raise ValueError("--image is for image-to-video; it cannot be used with --family t2v")
    if family not in preset.generators:
        raise ValueError(f"preset {preset.name!r} has no {family} generator (it has: {', '.join(preset.generators)})")
    if settings.weights.mode == "pretrained" and preset.sources:  # before building anything, like `render`
        resolve_weights(preset, settings.weights.paths, components_for(preset, {family}, settings.enhance.enabled))
    components = Components(settings)
    device, cuda = components.device, components.device.type == "cuda"
    torch.set_num_threads(settings.cpu_threads)  # as every executor: same frames_sha256 as `stt2v-ray render`

    with tempfile.TemporaryDirectory(prefix="stt2v-profile-") as tmp:
        fam = getattr(settings, family)
        image = args.image or (test_image(Path(tmp) / "image.png", fam.height, fam.width) if family == "i2v" else None)
        request = VideoRequest(id="profile", prompt=args.prompt, image=image, num_frames=args.frames, seed=args.seed)

        # Models first, measured apart from the render (weights' memory, load/build time).
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        generator = components.generator(family)
        if settings.enhance.enabled:
            components.enhancer(generator.height, generator.width)
        components.interpolator()
        if cuda:
            torch.cuda.synchronize()
        build = {"seconds": round(time.perf_counter() - start, 3),
                 "allocated_mib": round(torch.cuda.memory_allocated() / MIB, 1) if cuda else None,
                 "peak_mib": round(torch.cuda.max_memory_allocated() / MIB, 1) if cuda else None}

        clock = ProfilingClock(StageClock("profile", "profile"), device)
        start = time.perf_counter()
        out = render_video(request, settings, components, str(Path(tmp) / "profile.mp4"), clock)
        clock.sync()
        render_seconds = time.perf_counter() - start
        clock.fold()

    units = clock.rows  # unrounded: a span of microseconds (e.g. base "prepare") must not read as 0
    return {
        "device": {"type": device.type, "name": device_name(device)},
        "versions": {"torch": torch.__version__, "diffusers": _version("diffusers"), "python": platform.python_version()},
        "preset": settings.preset, "family": family, "frames": out["num_frames"],
        "weights": settings.weights.mode, "real_output": settings.weights.mode == "pretrained" and preset.weights == "pretrained",
        "memopt": args.memopt, "memopt_applied": applied, "memopt_not_applied": not_applied,
        "settings": {"device": settings.device, "cpu_threads": settings.cpu_threads,
                     family: getattr(settings, family).model_dump(), "enhance": settings.enhance.model_dump(),
                     "interpolate": settings.interpolate.model_dump(), "memory": settings.memory.model_dump()},
        "video": {"width": out["width"], "height": out["height"], "fps": out["fps"]},
        "build": build,
        "stages": stage_totals(units, cuda),
        "units": units,
        "render_seconds": round(render_seconds, 4),
        "total_seconds": round(render_seconds + build["seconds"], 4),
        "peak_mib": round(max(clock.overall_peak, 0) / MIB, 1) if cuda else None,
        "peak_mib_with_build": round(max(clock.overall_peak / MIB, build["peak_mib"]), 1) if cuda else None,
        "frames_sha256": out["frames_sha256"],
    }


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # not installed
        return None


def table(result: dict) -> str:
    mib = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    lines = [f"{result['preset']} ({result['family']}, {result['frames']} frames, weights {result['weights']}, "
             f"memopt {'on' if result['memopt'] else 'off'}) on {result['device']['type']}: {result['device']['name']}",
             f"{'stage':<12}{'units':>6}{'seconds':>10}{'s/unit':>9}{'peak MiB':>10}"]
    for stage, t in result["stages"].items():
        lines.append(f"{stage:<12}{t['units']:>6}{t['seconds']:>10.2f}{t['seconds'] / t['units']:>9.3f}{mib(t['peak_mib']):>10}")
    b = result["build"]
    lines.append(f"build {b['seconds']:.1f}s (weights {mib(b['allocated_mib'])} MiB); render {result['render_seconds']:.1f}s; "
                 f"peak {mib(result['peak_mib'])} MiB")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="streamingsvd")
    p.add_argument("--frames", type=int, default=49, help="frames of the output video (default 49)")
    p.add_argument("--weights", choices=("random", "pretrained"), default="random")
    p.add_argument("--memopt", action="store_true", help="turn on the memory settings the preset supports")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="setting override (repeatable)")
    p.add_argument("--image", help="conditioning image (image-to-video); default: a generated test image for i2v presets")
    p.add_argument("--family", choices=("auto", "t2v", "i2v"), default="auto",
                   help="auto: i2v when the preset has an i2v generator, else t2v")
    p.add_argument("--prompt", default="a red car driving along a coastal road at sunset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--json", help="also write the JSON here")
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error("--frames must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = profile(args)
    except MissingWeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad preset / --set / device / unsupported memory setting (pydantic errors included)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not result["real_output"]:
        print("note: random weights: timings and memory are the real networks', the frames are noise", file=sys.stderr)
    print(table(result), file=sys.stderr)
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
