"""The training report kept beside the weights: a loss curve PNG per stage, settings, minutes.

PNG plots are drawn with Pillow (no plotting library is a dependency): raw per-step losses in
grey, their moving average in blue, on a log-scaled loss axis.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

from stt2v_ray.models.blocks.sharded import copy_export, export_shards
from stt2v_ray.train.config import STAGES, TrainSettings
from stt2v_ray.train.stages import EXPORT_NAME, init_folder


def read_losses(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot_losses(rows: list[dict], title: str, path: Path, size: tuple[int, int] = (640, 360)) -> None:
    w, h = size
    left, right, top, bottom = 60, 16, 28, 36
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.text((left, 8), title, fill="black")
    if not rows:
        img.save(path)
        return
    steps = [r["step"] for r in rows]
    logs = [math.log10(max(r["loss"], 1e-8)) for r in rows]
    lo, hi = min(logs), max(logs)
    hi = hi if hi > lo else lo + 1
    x_max = max(steps) or 1

    def xy(step: float, log_loss: float) -> tuple[float, float]:
        return (left + (w - left - right) * step / x_max, top + (h - top - bottom) * (hi - log_loss) / (hi - lo))

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for value in (lo, (lo + hi) / 2, hi):
        y = xy(0, value)[1]
        d.text((4, y - 6), f"{10 ** value:.3g}", fill="black")
    d.text((left, h - bottom + 4), "0", fill="black")
    d.text((w - right - 40, h - bottom + 4), f"step {x_max}", fill="black")
    d.point([xy(s, y) for s, y in zip(steps, logs, strict=False)], fill=(170, 170, 170))
    smooth = moving_average(logs, max(1, len(logs) // 30))
    d.line([xy(s, y) for s, y in zip(steps, smooth, strict=False)], fill=(20, 60, 200), width=2)
    img.save(path)


def weights_digest(folder: Path, name: str) -> str:
    """SHA-256 over an export's index and shards, in name order: which weights a warm start began from."""
    digest = hashlib.sha256()
    for file in [folder / f"{name}.index.json"] + export_shards(folder, name):
        digest.update(file.read_bytes())
    return digest.hexdigest()


def stage_lineage(report: dict, stage: str) -> dict:
    """The part of an earlier run's report about one stage: its settings and its entry (which holds
    its own warm start, so the chain goes back run by run). Only that stage's: embedding whole
    reports grew them about 3x per generation (every stage carried every stage's history)."""
    settings = {k: v for k, v in (report.get("settings") or {}).items() if not isinstance(v, dict) or k == stage}
    entry = (report.get("stages") or {}).get(stage)
    if entry is not None:  # its own parents too (reports written before this pruning embed whole ones)
        entry = dict(entry)
        for link in ("init", "kept"):
            if isinstance(entry.get(link), dict) and entry[link].get("report"):
                entry[link] = {**entry[link], "report": stage_lineage(entry[link]["report"], stage)}
    return {"settings": settings, "stages": {stage: entry} if entry is not None else {}}


def init_record(init: str, stage: str) -> dict:
    """What a warm start began from, taken when it is loaded (`shipped` changes whenever weights ship)."""
    folder = init_folder(init)
    earlier = folder / "report" / "report.json"
    report = stage_lineage(json.loads(earlier.read_text()), stage) if earlier.is_file() else None
    return {"from": init, "folder": str(folder), "weights_sha256": weights_digest(folder, EXPORT_NAME[stage]),
            "report": report}


def keep_stages(out: Path, source: str, trained: list[str]) -> list[str]:
    """Take the stages this run does not train from an earlier export (`source`: a folder or
    'shipped'), weights and report entry, so that OUT/weights is a whole preset with a whole
    report. Exports already in OUT/weights stay (a resumed run). Returns the kept stages."""
    folder = init_folder(source)
    kept = [s for s in STAGES if s not in trained]
    t2v = ("base", "cam", "apm")
    first = next((s for s in t2v if s in trained), None)
    late = [s for s in t2v[t2v.index(first) + 1:] if s in kept] if first else []
    if late:  # a CAM is trained against its base, an APM on its CAM: keeping a later one would not fit
        raise ValueError(f"--rest-from keeps {', '.join(late)} but {first} trains here: "
                         f"train {', '.join(late)} too, or keep {first}")
    for name in sorted({EXPORT_NAME[s] for s in kept}):
        if not (folder / f"{name}.index.json").is_file():
            raise ValueError(f"--rest-from {source}: {folder} has no {name} export ({name}.index.json)")
        if not (out / "weights" / f"{name}.index.json").is_file():
            copy_export(folder, out / "weights", name)
    for stage in kept:
        record = out / "stages" / stage / "kept.json"
        if not record.is_file():
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(init_record(source, stage), indent=1))
            curve = folder / "report" / f"loss_{stage}.png"  # its loss curve goes on into the new report
            if curve.is_file():
                shutil.copyfile(curve, record.parent / "kept_loss.png")
    return kept


def parent_entry(record: dict, stage: str) -> dict:
    """The stage's entry in the report an init/kept record embeds ({} when it had none)."""
    return (record.get("report") or {}).get("stages", {}).get(stage) or {}


def trained_entry(kept: dict, stage: str) -> dict:
    """The report entry of the run that last trained a kept stage (kept from a run that kept it...)."""
    entry = parent_entry(kept, stage)
    while isinstance(entry.get("kept"), dict):
        entry = parent_entry(entry["kept"], stage)
    return entry


def write_report(out: Path, settings: TrainSettings) -> Path:
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    summary = {"settings": settings.model_dump(), "stages": {}}
    lines = ["# Toy preset training report", "", "| stage | steps | minutes | first 20 steps' loss | last 20 steps' loss |",
             "|---|---|---|---|---|"]
    for stage in STAGES:
        rows = read_losses(out / "stages" / stage / "loss.jsonl")
        kept = out / "stages" / stage / "kept.json"
        if not rows and kept.is_file():  # not trained here: taken whole from an earlier export
            entry = json.loads(kept.read_text())
            prior = trained_entry(entry, stage)
            summary["stages"][stage] = {"kept": entry}
            summary["settings"][stage] = None  # this run's were not used: the kept stage's are in its report
            if (kept.parent / "kept_loss.png").is_file():
                shutil.copyfile(kept.parent / "kept_loss.png", report / f"loss_{stage}.png")
            lines.append(f"| {stage} | kept from `{entry['from']}` ({EXPORT_NAME[stage]} sha256 "
                         f"{entry['weights_sha256'][:16]}...; `stages.{stage}.kept.report`) | "
                         f"{prior.get('minutes', '-')} | {prior.get('loss_first20', '-')} | {prior.get('loss_last20', '-')} |")
            continue
        if not rows:
            continue
        first = sum(r["loss"] for r in rows[:20]) / len(rows[:20])
        last = sum(r["loss"] for r in rows[-20:]) / len(rows[-20:])
        minutes = rows[-1]["seconds"] / 60
        summary["stages"][stage] = {"steps": len(rows), "minutes": round(minutes, 2),
                                    "loss_first20": round(first, 5), "loss_last20": round(last, 5)}
        plot_losses(rows, f"{stage}: loss per step (log scale)", report / f"loss_{stage}.png")
        lines.append(f"| {stage} | {len(rows)} / {getattr(settings, stage).steps} | {minutes:.1f} | {first:.4f} | {last:.4f} |")
    # Warm starts: the weights a stage started from, with the report that came with them (the lineage)
    for stage in STAGES:
        if stage not in summary["stages"]:
            continue
        record = out / "stages" / stage / "init.json"
        if not record.is_file():
            continue
        entry = json.loads(record.read_text())
        summary["stages"][stage]["init"] = entry
        prior = parent_entry(entry, stage)
        steps = f"{prior['steps']} earlier steps" if "steps" in prior else "an earlier run (no report)"
        minutes = f", {prior['minutes']:.1f} min" if "minutes" in prior else ""
        lines += ["", f"{stage} was warm-started from `{entry['from']}` ({EXPORT_NAME[stage]} weights sha256 "
                      f"{entry['weights_sha256'][:16]}...): {steps}{minutes}; that run's report is in `report.json` "
                      f"(`stages.{stage}.init.report`)."]
    lines += ["", "Settings: `report.json` (`settings`). Loss curves: `loss_<stage>.png`."]
    (report / "report.json").write_text(json.dumps(summary, indent=1))
    (report / "README.md").write_text("\n".join(lines) + "\n")
    return report
