"""Procedural toy clips: one shape of one colour on a plain background, moving and bouncing.

A clip is a pure function of (seed, index) and its size: the attributes are drawn from
`stt2v_ray.plan.seeds.generator(seed, "toy-clip", index)`, so clip 7 of seed 0 is the
same in any process and whether or not clips 0..6 were made. Any length works: the
path is a closed-form reflection (a triangle wave), not a simulation.

Every clip comes with a prompt from a small grammar and a parser back to attributes:

    a[n] <colour> <shape> moving [slowly|quickly] <direction> on a <background> background

Coordinates: x to the right, y down, pixel centres at integer coordinates, so a
(H, W) frame spans [-0.5, W - 0.5] x [-0.5, H - 0.5]. The object's "centre" is the
centroid of its area (for the triangle: its centre of mass, not its bounding box's).
Frames: float32 (F, 3, H, W) in [-1, 1], the pipeline's convention; edges anti-aliased
by 8x8 supersampling, so the coverage-weighted centroid follows sub-pixel motion
(to within 1/16 px per axis, the sample spacing).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from stt2v_ray.plan.seeds import generator

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "green": (25, 200, 40),
    "blue": (30, 60, 235),
    "yellow": (240, 220, 20),
    "magenta": (220, 30, 200),
    "cyan": (20, 210, 220),
    "orange": (245, 130, 20),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}
# Unit vectors in image coordinates (y down).
DIRECTIONS: dict[str, tuple[int, int]] = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1)}
# Speed words of the grammar and their factor on the clip's base speed ("" = none said).
SPEEDS: dict[str, float] = {"": 1.0, "slowly": 0.5, "quickly": 2.0}
SUPERSAMPLE = 8

_PROMPT_RE = re.compile(
    r"^an?\s+(?P<colour>[a-z]+)\s+(?P<shape>[a-z]+)\s+moving\s+(?:(?P<speed>slowly|quickly)\s+)?"
    r"(?P<direction>[a-z]+)\s+on\s+an?\s+(?P<background>[a-z]+)\s+background\.?$"
)


@dataclass(frozen=True)
class ToyPrompt:
    """The attributes a prompt of the grammar names."""

    colour: str
    shape: str
    direction: str
    background: str
    speed: str = ""  # "", "slowly" or "quickly"

    def __post_init__(self) -> None:
        for name, value, allowed in (("colour", self.colour, COLOURS), ("shape", self.shape, SHAPES),
                                     ("direction", self.direction, DIRECTIONS),
                                     ("background", self.background, BACKGROUNDS), ("speed", self.speed, SPEEDS)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; known: {sorted(allowed)}")

    @property
    def text(self) -> str:
        article = "an" if self.colour[0] in "aeiou" else "a"
        speed = f"{self.speed} " if self.speed else ""
        return f"{article} {self.colour} {self.shape} moving {speed}{self.direction} on a {self.background} background"


def parse_prompt(text: str) -> ToyPrompt | None:
    """Attributes of a grammar prompt (case and extra spaces ignored), or None when `text` is not one."""
    match = _PROMPT_RE.match(" ".join(text.lower().split()))
    if match is None:
        return None
    parts = match.groupdict()
    parts["speed"] = parts["speed"] or ""
    try:
        return ToyPrompt(**parts)
    except ValueError:  # right sentence shape, a word outside the vocabulary
        return None


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines a clip's pixels."""

    prompt: ToyPrompt
    num_frames: int
    height: int
    width: int
    size: float  # side of the shape's bounding box, pixels
    speed: float  # pixels per frame (base speed times the prompt's speed word)
    start: tuple[float, float]  # centre (x, y) at frame 0

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.height < 4 or self.width < 4:
            raise ValueError(f"need num_frames >= 1 and frames of at least 4x4, got "
                             f"{self.num_frames} frames of {self.height}x{self.width}")
        if not 2 <= self.size <= min(self.height, self.width) - 2:
            raise ValueError(f"size must be in [2, {min(self.height, self.width) - 2}] for "
                             f"{self.height}x{self.width} frames, got {self.size}")
        if self.speed < 0:
            raise ValueError(f"speed must be >= 0, got {self.speed}")


def default_size(height: int, width: int) -> float:
    """Bounding-box side of the object: about 9 px at 32x32 (the prototype's ~80 px objects)."""
    return float(max(3, round(0.28 * min(height, width))))


def check_focus(focus: Mapping[str, float]) -> None:
    """`focus` maps grammar words (colours, shapes, directions, backgrounds) to positive draw weights."""
    known = set(COLOURS) | set(SHAPES) | set(DIRECTIONS) | set(BACKGROUNDS)
    for word, weight in focus.items():
        if word not in known:
            raise ValueError(f"focus: unknown word {word!r}; known: {', '.join(sorted(known))}")
        if not weight > 0:
            raise ValueError(f"focus: weight of {word!r} must be > 0, got {weight!r}")


def sample_spec(seed: int, index: int, num_frames: int = 16, height: int = 32, width: int = 32,
                speed: float = 1.5, size: float | None = None, speeds: tuple[str, ...] = ("",),
                focus: Mapping[str, float] | None = None) -> ClipSpec:
    """Clip `index` of `seed`: shape, colour, background, direction and speed word drawn uniformly,
    or, for a word `focus` weighs (e.g. {"gray": 3}), that many times as often as its siblings.

    The start lies in the half of the frame the object moves away from, so it travels in the
    prompted direction for a while before its first bounce (what "moving right" means).
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be an int >= 0, got {index!r}")
    for word in speeds:
        if word not in SPEEDS:
            raise ValueError(f"unknown speed word {word!r}; known: {sorted(SPEEDS)}")
    focus = dict(focus or {})
    check_focus(focus)
    g = generator(seed, "toy-clip", index)

    def pick(options):
        weights = [float(focus.get(o, 1.0)) for o in options]
        if all(w == 1.0 for w in weights):  # the uniform draw: clips without focus stay what they always were
            return options[int(torch.randint(len(options), (1,), generator=g))]
        return options[int(torch.multinomial(torch.tensor(weights, dtype=torch.float64), 1, generator=g))]

    prompt = ToyPrompt(colour=pick(list(COLOURS)), shape=pick(SHAPES), direction=pick(list(DIRECTIONS)),
                       background=pick(list(BACKGROUNDS)), speed=pick(list(speeds)))
    size = default_size(height, width) if size is None else float(size)
    u, v = torch.rand(2, generator=g).tolist()
    dx, dy = DIRECTIONS[prompt.direction]
    (x_lo, x_hi) = _centre_range(prompt.shape, size, width, 0)
    (y_lo, y_hi) = _centre_range(prompt.shape, size, height, 1)
    # Along the motion axis: the quarter of the free range behind the object; across it: anywhere.
    x = x_lo + (x_hi - x_lo) * (u if dx == 0 else (0.25 * u if dx > 0 else 1 - 0.25 * u))
    y = y_lo + (y_hi - y_lo) * (v if dy == 0 else (0.25 * v if dy > 0 else 1 - 0.25 * v))
    return ClipSpec(prompt, num_frames, height, width, size, speed * SPEEDS[prompt.speed], (x, y))


def _centre_range(shape: str, size: float, extent: int, axis: int) -> tuple[float, float]:
    """Centre positions along `axis` (0: x, 1: y) that keep the shape inside [-0.5, extent - 0.5].

    The triangle's centroid is not its box's centre: it reaches 2/3 of its height above it.
    """
    before, after = (2 * size / 3, size / 3) if (shape == "triangle" and axis == 1) else (size / 2, size / 2)
    return before - 0.5, extent - 0.5 - after


def _reflect(p: Tensor, lo: float, hi: float) -> Tensor:
    """Fold positions into [lo, hi] as a ball bouncing between two walls would be."""
    span = hi - lo
    if span <= 0:
        return torch.full_like(p, lo)
    q = torch.remainder(p - lo, 2 * span)
    return lo + torch.where(q > span, 2 * span - q, q)


def object_path(spec: ClipSpec) -> Tensor:
    """True centre (x, y) of the object per frame, (F, 2) float64: straight motion folded at the walls."""
    t = torch.arange(spec.num_frames, dtype=torch.float64)
    dx, dy = DIRECTIONS[spec.prompt.direction]
    x = _reflect(spec.start[0] + dx * spec.speed * t, *_centre_range(spec.prompt.shape, spec.size, spec.width, 0))
    y = _reflect(spec.start[1] + dy * spec.speed * t, *_centre_range(spec.prompt.shape, spec.size, spec.height, 1))
    return torch.stack([x, y], dim=1)


def shape_coverage(shape: str, centre: tuple[float, float], size: float, height: int, width: int) -> Tensor:
    """(H, W) float32 in [0, 1]: the fraction of each pixel the shape covers (8x8 supersampled)."""
    s = SUPERSAMPLE
    out = torch.zeros(height, width)
    # Only the pixels around the shape can be covered: sample a window, not the frame.
    reach = size  # >= the largest distance from the centre to any point of the shape
    x0, x1 = max(0, int(centre[0] - reach)), min(width, int(centre[0] + reach) + 2)
    y0, y1 = max(0, int(centre[1] - reach)), min(height, int(centre[1] + reach) + 2)
    if x0 >= x1 or y0 >= y1:
        return out
    offsets = (torch.arange(s, dtype=torch.float64) + 0.5) / s - 0.5
    ys = (torch.arange(y0, y1, dtype=torch.float64).view(-1, 1) + offsets.view(1, -1)).reshape(-1)
    xs = (torch.arange(x0, x1, dtype=torch.float64).view(-1, 1) + offsets.view(1, -1)).reshape(-1)
    x = xs.view(1, -1) - centre[0]
    y = ys.view(-1, 1) - centre[1]
    half = size / 2
    if shape == "circle":
        inside = x * x + y * y <= half * half
    elif shape == "square":
        inside = (x.abs() <= half) & (y.abs() <= half)
    elif shape == "triangle":
        # Apex up, base down; its centroid (1/3 of the height above the base) is the centre.
        h = size
        top, bottom = -2 * h / 3, h / 3
        frac = (y - top) / h  # 0 at the apex, 1 at the base
        inside = (y >= top) & (y <= bottom) & (x.abs() <= half * frac)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {list(SHAPES)}")
    out[y0:y1, x0:x1] = inside.double().view(y1 - y0, s, x1 - x0, s).mean(dim=(1, 3)).float()
    return out


def render_coverage(spec: ClipSpec) -> Tensor:
    """(F, 1, H, W) how much of each pixel the object covers, in [0, 1]."""
    return torch.stack([shape_coverage(spec.prompt.shape, (x, y), spec.size, spec.height, spec.width)
                        for x, y in object_path(spec).tolist()]).unsqueeze(1)


def compose(spec: ClipSpec, coverage: Tensor) -> Tensor:
    """Frames (F, 3, H, W) float32 in [-1, 1]: the object's colour over the background by coverage."""
    fg = torch.tensor(COLOURS[spec.prompt.colour], dtype=torch.float32).view(3, 1, 1) / 127.5 - 1
    bg = torch.tensor(BACKGROUNDS[spec.prompt.background], dtype=torch.float32).view(3, 1, 1) / 127.5 - 1
    return bg * (1 - coverage) + fg * coverage


def render_clip(spec: ClipSpec) -> Tensor:
    """Frames (F, 3, H, W) float32 in [-1, 1]."""
    return compose(spec, render_coverage(spec))


@dataclass(frozen=True)
class Clip:
    spec: ClipSpec
    frames: Tensor  # (F, 3, H, W) float32 in [-1, 1]
    path: Tensor  # (F, 2) true centre (x, y) per frame
    coverage: Tensor  # (F, 1, H, W) the object's coverage the frames were rendered with (loss weights)

    @property
    def prompt(self) -> str:
        return self.spec.prompt.text


def make_clip(seed: int, index: int, num_frames: int = 16, height: int = 32, width: int = 32,
              speed: float = 1.5, size: float | None = None, speeds: tuple[str, ...] = ("",),
              focus: Mapping[str, float] | None = None) -> Clip:
    """Clip `index` of `seed`: frames, true path and prompt."""
    spec = sample_spec(seed, index, num_frames, height, width, speed, size, speeds, focus)
    return clip_from_spec(spec)


def clip_from_spec(spec: ClipSpec) -> Clip:
    coverage = render_coverage(spec)
    return Clip(spec, compose(spec, coverage), object_path(spec), coverage)


def clip_for_prompt(prompt: str | ToyPrompt, num_frames: int = 16, height: int = 32, width: int = 32,
                    speed: float = 1.5, size: float | None = None, start: tuple[float, float] | None = None) -> Clip:
    """A clip of a given prompt; by default it starts a quarter of the way into its travel."""
    parsed = parse_prompt(prompt) if isinstance(prompt, str) else prompt
    if parsed is None:
        raise ValueError(f"not a prompt of the toy grammar: {prompt!r}")
    size = default_size(height, width) if size is None else float(size)
    if start is None:
        (x_lo, x_hi) = _centre_range(parsed.shape, size, width, 0)
        (y_lo, y_hi) = _centre_range(parsed.shape, size, height, 1)
        dx, dy = DIRECTIONS[parsed.direction]
        start = (x_lo + (x_hi - x_lo) * (0.5 - 0.25 * dx), y_lo + (y_hi - y_lo) * (0.5 - 0.25 * dy))
    return clip_from_spec(ClipSpec(parsed, num_frames, height, width, size, speed * SPEEDS[parsed.speed], start))

