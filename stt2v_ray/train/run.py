"""`stt2v-ray train`: settings from a named configuration + overrides, stages in order, the report."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from pydantic import ValidationError

from stt2v_ray.config import deep_merge, parse_override
from stt2v_ray.train.config import STAGES, TrainSettings, named_config


def load_settings(config: str, overrides: list[str], out: Path) -> TrainSettings:
    """Named config < --set overrides. A run folder remembers its settings: resuming with other ones is an error."""
    raw = named_config(config)
    for text in overrides:
        raw = deep_merge(raw, parse_override(text))
    settings = TrainSettings(**raw)
    saved = out / "settings.json"
    if saved.is_file():
        before = TrainSettings(**json.loads(saved.read_text()))
        changed = {k for k in STAGES + ("seed", "bf16") if getattr(before, k) != getattr(settings, k)}
        if changed:
            raise ValueError(f"{saved}: this run folder was trained with other settings ({', '.join(sorted(changed))}); "
                             f"use a new --out or the same --config/--set")
    else:
        out.mkdir(parents=True, exist_ok=True)
        saved.write_text(settings.model_dump_json(indent=1))
    return settings


def main(out: str, config: str, stages: list[str] | None, overrides: list[str], max_minutes: float | None,
         rest_from: str | None = None) -> int:
    from stt2v_ray.train.loop import train_stage
    from stt2v_ray.train.report import keep_stages, write_report

    folder = Path(out)
    try:
        settings = load_settings(config, overrides, folder)
    except (ValueError, ValidationError) as exc:
        print(f"error: training settings: {exc}", file=sys.stderr)
        return 2
    if settings.threads:
        torch.set_num_threads(settings.threads)
    wanted = [s for s in STAGES if s in (stages or STAGES)]
    if rest_from is not None:
        try:
            kept = keep_stages(folder, rest_from, wanted)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"kept from {rest_from}: {', '.join(kept) or 'nothing'}", flush=True)
        write_report(folder, settings)
    for stage in wanted:
        if stage in ("cam", "apm") and not (folder / "weights" / "t2v.index.json").is_file():
            print(f"error: stage {stage} starts from the previous stage's weights: run --stage "
                  f"{'base' if stage == 'cam' else 'cam'} first ({folder / 'weights'} has no t2v)", file=sys.stderr)
            return 2
        started = time.time()
        summary = train_stage(stage, settings, folder, log=lambda line: print(line, flush=True), max_minutes=max_minutes)
        write_report(folder, settings)
        if not summary["done"]:
            return 0
        print(f"[{stage}] {time.time() - started:.0f} s this run", flush=True)
    print(f"report: {folder / 'report' / 'README.md'}")
    return 0
