"""One training stage, resumable: AdamW, warm-up then cosine decay, gradient clipping, an EMA
of the trained weights, bf16 autocast, a loss log, checkpoints, and the export that ships.

Layout under the run folder OUT:
    OUT/stages/<stage>/checkpoint.safetensors   trained params, EMA, AdamW state; run state in its metadata
    OUT/stages/<stage>/loss.jsonl               one line per step: step, loss, lr, seconds
    OUT/stages/<stage>/init.json                a warm start's source, digest and report, taken when loaded
    OUT/weights/{t2v,enhancer}-*.safetensors    float16 shards + index: what `stt2v_ray.models.toy.toy` loads
The checkpoint is one file replaced atomically, so a kill at any moment resumes from the last
complete checkpoint; steps after it are re-run, drawing the same clips and noise (they are
keyed by (seed, stage, step)), so the resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from stt2v_ray.models.blocks.sharded import save_sharded
from stt2v_ray.models.toy import toy
from stt2v_ray.train.config import StageSettings, TrainSettings
from stt2v_ray.train.data import make_batch
from stt2v_ray.train.report import init_record
from stt2v_ray.train.stages import Setup, setup_stage


def lr_at(step: int, st: StageSettings) -> float:
    if st.warmup and step < st.warmup:
        return st.lr * (step + 1) / st.warmup
    progress = (step - st.warmup) / max(1, st.steps - st.warmup)
    return st.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))  # cosine to 10%


def save_checkpoint(path: Path, setup: Setup, ema: dict, opt: torch.optim.Optimizer, state: dict) -> None:
    tensors = {f"param.{n}": p.detach() for n, p in setup.trainable.items()}
    tensors |= {f"ema.{n}": e for n, e in ema.items()}
    opt_state = opt.state_dict()
    for index, slots in opt_state["state"].items():
        for key, value in slots.items():
            tensors[f"opt.{index}.{key}"] = torch.as_tensor(value)
    meta = {"state": json.dumps(state), "param_groups": json.dumps(opt_state["param_groups"])}
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_checkpoint(path: Path, setup: Setup, ema: dict, opt: torch.optim.Optimizer) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    names = set(setup.trainable)
    saved = {k[len("param."):] for k in tensors if k.startswith("param.")}
    if saved != names:
        raise ValueError(f"{path}: checkpoint trains {len(saved)} tensors, this stage {len(names)} "
                         f"(e.g. {sorted(saved ^ names)[:3]}): not a checkpoint of this stage and model")
    with torch.no_grad():
        for n, p in setup.trainable.items():
            p.copy_(tensors[f"param.{n}"])
            ema[n].copy_(tensors[f"ema.{n}"])
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, slot = key.split(".", 2)
            slots.setdefault(int(index), {})[slot] = value
    opt.load_state_dict({"state": slots, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta["state"])


def export(setup: Setup, ema: dict, weights: Path) -> list[Path]:
    """Everything the stage's model file holds, with the EMA in place of the trained weights."""
    state = {}
    for prefix, module in setup.modules.items():
        for key, value in module.state_dict().items():
            state[f"{prefix}.{key}"] = ema.get(f"{prefix}.{key}", value)
    return save_sharded(state, weights, setup.export_name)


def train_stage(stage: str, settings: TrainSettings, out: Path, log: Callable[[str], None] = print,
                max_minutes: float | None = None) -> dict:
    """Train (or resume) one stage; returns its summary. Stops early after `max_minutes` (resumable)."""
    st: StageSettings = getattr(settings, stage)
    folder = out / "stages" / stage
    folder.mkdir(parents=True, exist_ok=True)
    ckpt, loss_log = folder / "checkpoint.safetensors", folder / "loss.jsonl"
    setup = setup_stage(stage, settings.seed, out / "weights", st)
    for module in setup.modules.values():
        toy.use_math_attention(module)
        module.eval()  # no dropout: a step is a function of (weights, seed, step)
    opt = torch.optim.AdamW(list(setup.trainable.values()), lr=st.lr, weight_decay=st.weight_decay)
    ema = {n: p.detach().clone() for n, p in setup.trainable.items()}
    state = {"step": 0, "seconds": 0.0}
    if ckpt.is_file():
        state = load_checkpoint(ckpt, setup, ema, opt)
        log(f"[{stage}] resuming at step {state['step']}/{st.steps}")
    elif st.init is not None:  # the warm start is loaded now: record what it was, for the report
        (folder / "init.json").write_text(json.dumps(init_record(st.init, stage), indent=1))
    lines = loss_log.read_text().splitlines() if loss_log.is_file() else []
    lines = [ln for ln in lines if json.loads(ln)["step"] < state["step"]]  # steps after the checkpoint run again
    loss_log.write_text("".join(ln + "\n" for ln in lines))
    n_params = sum(p.numel() for p in setup.trainable.values())
    log(f"[{stage}] training {n_params / 1e6:.2f} M parameters for {st.steps} steps, batch {st.batch}")

    t_start, since_ckpt, window = time.time(), time.time(), []
    with loss_log.open("a") as losses:
        step = state["step"]
        while step < st.steps:
            lr = lr_at(step, st)
            for group in opt.param_groups:
                group["lr"] = lr
            batch = make_batch(stage, settings.seed, step, st.batch, st.window, st.focus)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
                loss = setup.loss(batch, step)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(setup.trainable.values()), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            decay = min(st.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for n, p in setup.trainable.items():
                    ema[n].mul_(decay).add_(p.detach(), alpha=1 - decay)
            step += 1
            now = time.time()
            state = {"step": step, "seconds": state["seconds"] + (now - since_ckpt)}
            since_ckpt = now
            losses.write(json.dumps(
                {"step": step - 1, "loss": float(loss.detach()), "lr": lr, "seconds": round(state["seconds"], 2)}
            ) + "\n")
            losses.flush()
            window = (window + [float(loss.detach())])[-st.log_every:]
            if step % st.log_every == 0 or step == st.steps:
                rate = step / state["seconds"] if state["seconds"] else 0.0
                eta = (st.steps - step) / rate / 60 if rate else float("nan")
                log(f"[{stage}] step {step}/{st.steps} loss {sum(window) / len(window):.4f} lr {lr:.2e} "
                    f"{rate:.2f} steps/s, {state['seconds'] / 60:.1f} min, ~{eta:.1f} min left")
            if step % st.checkpoint_every == 0 or step == st.steps:
                save_checkpoint(ckpt, setup, ema, opt, state)
            if max_minutes is not None and (now - t_start) / 60 >= max_minutes and step < st.steps:
                save_checkpoint(ckpt, setup, ema, opt, state)
                log(f"[{stage}] stopped after {max_minutes} min at step {step}; run again to resume")
                return {"stage": stage, "done": False, "step": step}
    export(setup, ema, out / "weights")
    log(f"[{stage}] done: {st.steps} steps in {state['seconds'] / 60:.1f} min; weights -> {out / 'weights'}")
    return {"stage": stage, "done": True, "step": st.steps, "minutes": state["seconds"] / 60}
