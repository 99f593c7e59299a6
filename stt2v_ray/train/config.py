"""Training settings: one `StageSettings` per stage, validated once (pydantic, extra="forbid").

Two named configurations: `smoke` (a few steps in seconds: tests) and `full` (the run whose
weights ship as the `toy` preset). Any field can be overridden with `--set stage.field=value`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

STAGES = ("base", "cam", "apm", "enhancer")
Stage = Literal["base", "cam", "apm", "enhancer"]


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


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seeds the initial weights, the clips and every noise draw.")
    bf16: bool = Field(True, description="bfloat16 autocast (about 3x faster on this CPU); weights and optimizer stay float32.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default).")
    base: StageSettings
    cam: StageSettings
    apm: StageSettings
    enhancer: StageSettings


def named_config(name: str) -> dict:
    if name == "smoke":
        small = {"steps": 4, "batch": 2, "lr": 1e-3, "warmup": 0, "checkpoint_every": 2, "log_every": 1, "ema": 0.5}
        return {"bf16": False, "base": dict(small), "cam": dict(small), "apm": dict(small), "enhancer": dict(small)}
    if name == "full":
        return {
            "base": {"steps": 1200, "lr": 5e-4},
            "cam": {"steps": 400, "lr": 4e-4, "batch": 8},
            "apm": {"steps": 150, "lr": 3e-4, "warmup": 20, "batch": 8},
            "enhancer": {"steps": 240, "lr": 5e-4, "batch": 8, "warmup": 10, "checkpoint_every": 60},
        }
    raise ValueError(f"unknown training configuration {name!r}; known: smoke, full")
