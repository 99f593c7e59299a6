"""Safetensors shards with an index, as diffusers/transformers ship large models.

`save_sharded(state, folder, "t2v")` writes `t2v-00001-of-00003.safetensors`, ... and
`t2v.index.json` ({"weight_map": {key: shard file}}); each shard stays under `max_bytes`
(files in git stay small). Writes go to temporary names first and are renamed only when all
shards are written, so a crash never leaves a half-written set that would load.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MAX_SHARD_BYTES = 4_500_000


def save_sharded(state: dict[str, torch.Tensor], folder: Path | str, name: str, dtype: torch.dtype | None = torch.float16,
                 max_bytes: int = MAX_SHARD_BYTES) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state):
        t = state[key].detach().cpu()
        t = (t.to(dtype) if dtype is not None and t.is_floating_point() else t).contiguous()
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = t
        size += nbytes
    n = len(shards)
    files = [f"{name}-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    for old in folder.glob(f"{name}-*-of-*.safetensors"):  # an earlier export with another shard count
        if old.name not in files:
            old.unlink()
    weight_map = {key: file for shard, file in zip(shards, files, strict=False) for key in shard}
    for shard, file in zip(shards, files, strict=False):
        save_file(shard, str(folder / (file + ".tmp")), metadata={"format": "pt"})
    index_tmp = folder / f"{name}.index.json.tmp"
    index_tmp.write_text(json.dumps({"metadata": {
        "total_size": sum(t.numel() * t.element_size() for s in shards for t in s.values())
    },
                                     "weight_map": weight_map}, indent=1, sort_keys=True))
    for file in files:
        os.replace(folder / (file + ".tmp"), folder / file)
    os.replace(index_tmp, folder / f"{name}.index.json")
    return [folder / f for f in files]


def load_sharded(folder: Path | str, name: str) -> dict[str, torch.Tensor]:
    folder = Path(folder)
    index = folder / f"{name}.index.json"
    if not index.is_file():
        raise FileNotFoundError(f"no {index.name} in {folder} (weights {name!r} were never exported there)")
    weight_map = json.loads(index.read_text())["weight_map"]
    state: dict[str, torch.Tensor] = {}
    for file in sorted(set(weight_map.values())):
        if Path(file).name != file:
            raise ValueError(f"{index}: shard name {file!r} must be a plain file name")
        part = load_file(str(folder / file))
        state.update(part)
    if set(state) != set(weight_map):
        raise ValueError(f"{index}: shards hold {len(state)} tensors, the index lists {len(weight_map)}")
    return state


def export_shards(folder: Path | str, name: str) -> list[Path]:
    """The shard files `name`'s index lists, sorted (not a glob: a stale shard is not part of it)."""
    folder = Path(folder)
    weight_map = json.loads((folder / f"{name}.index.json").read_text())["weight_map"]
    return [folder / file for file in sorted(set(weight_map.values()))]


def copy_export(source: Path | str, target: Path | str, name: str) -> None:
    """Copy an export, its index last (through a temporary name): a copy cut short has no index,
    so it is neither loaded nor mistaken for a whole one."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for shard in export_shards(source, name):
        shutil.copyfile(shard, target / shard.name)
    index_tmp = target / f"{name}.index.json.tmp"
    shutil.copyfile(Path(source) / f"{name}.index.json", index_tmp)
    os.replace(index_tmp, target / f"{name}.index.json")
