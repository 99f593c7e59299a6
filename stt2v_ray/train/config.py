"""Training settings: one `StageSettings` per stage, validated once (pydantic, extra="forbid").

Two named configurations: `smoke` (a few steps in seconds: tests) and `full` (the run whose
weights ship as the `toy` preset). Any field can be overridden with `--set stage.field=value`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stt2v_ray.data.clips import check_focus

STAGES = ("base", "cam", "apm", "enhancer")
Stage = Literal["base", "cam", "apm", "enhancer"]
# apm always continues the previous stage's export; cam's warm start replaces only its fresh CAM
WARM_START_STAGES = ("base", "cam", "enhancer")


def check_warm_start(stage: str, init: str | None) -> None:
    if init is not None and stage not in WARM_START_STAGES:
        raise ValueError(f"{stage}.init: only base, cam and enhancer take a warm start (apm continues the cam stage's export)")


class StageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(..., ge=1, description="Optimizer steps of the stage.")
    batch: int = Field(16, ge=1, description="Clips per step.")
    lr: float = Field(4e-4, gt=0, description="AdamW learning rate (after a linear warm-up).")
    warmup: int = Field(50, ge=0, description="Warm-up steps.")
    weight_decay: float = Field(0.01, ge=0)
    ema: float = Field(0.995, ge=0, lt=1, description="EMA decay of the trained weights (the EMA is what ships).")
    text_dropout: float = Field(0.1, ge=0, le=1, description="Share of clips trained unconditionally (for CFG).")
    checkpoint_every: int = Field(100, ge=1, description="Steps between resumable checkpoints.")
    log_every: int = Field(10, ge=1, description="Steps between progress lines.")
    init: str | None = Field(
        None, description="Warm start (base, cam, enhancer): a folder of exported toy weights to start from instead of "
        "the seeded init; 'shipped' is the package's weights. base/enhancer: keys it lacks must be zero-initialised "
        "additions. cam: only the export's CAM is taken (instead of a fresh copy of this run's base encoder) and "
        "trained on against this run's base.")
    object_weight: float = Field(1.0, gt=0, description="Loss weight of the pixels the object covers (1: plain MSE; "
                                 "the background is 94% of a toy frame).")
    t_power: float = Field(1.0, ge=1.0, description="Timestep draws t = t_max u^(1/p): 1 uniform; > 1 favours high "
                           "noise, where the CAM and APM matter (at low noise x_t already shows the frame).")
    cond_loss_weight: float = Field(0.0, ge=0, description="cam, apm: weight in the loss of the chunk's first "
                                    "frames, which regenerate the conditioning frames (the new frames always count 1).")
    window: int = Field(0, ge=0, description="cam: clips are windows starting up to this many frames into a longer "
                        "clip (later chunks of a video are mid-path or after a bounce); 0: clips start at frame 0.")
    focus: dict[str, float] = Field(default_factory=dict, description="Draw weights of grammar words, e.g. "
                                    "{gray: 3, yellow: 2}: clips with a weighed word come that many times as often "
                                    "as with its siblings (words not named weigh 1). Hard cases up-weighted.")

    @model_validator(mode="after")
    def _focus(self) -> StageSettings:
        check_focus(self.focus)
        return self


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seeds the initial weights, the clips and every noise draw.")
    bf16: bool = Field(True, description="bfloat16 autocast (about 3x faster on this CPU); weights and optimizer stay float32.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default).")
    base: StageSettings
    cam: StageSettings
    apm: StageSettings
    enhancer: StageSettings

    @model_validator(mode="after")
    def _warm_starts(self) -> TrainSettings:  # when the settings are read: not after base has trained for minutes
        for stage in STAGES:
            check_warm_start(stage, getattr(self, stage).init)
        return self


def named_config(name: str) -> dict:
    if name == "smoke":
        small = {"steps": 4, "batch": 2, "lr": 1e-3, "warmup": 0, "checkpoint_every": 2, "log_every": 1, "ema": 0.5}
        return {"bf16": False, "base": dict(small), "cam": dict(small), "apm": dict(small), "enhancer": dict(small)}
    if name == "full":
        return {
            "base": {"steps": 2400, "lr": 4e-4, "object_weight": 10.0},
            # cam/apm: plain MSE; with object_weight 10 the CAM's loss rose under training
            "cam": {"steps": 10000, "lr": 1e-3, "batch": 8, "window": 48, "cond_loss_weight": 0.5, "t_power": 3.0},
            "apm": {"steps": 300, "lr": 1e-3, "warmup": 20, "batch": 8, "cond_loss_weight": 0.5, "t_power": 3.0},
            "enhancer": {"steps": 200, "lr": 3e-4, "batch": 8, "warmup": 20, "object_weight": 10.0},
        }
    raise ValueError(f"unknown training configuration {name!r}; known: smoke, full")
