"""Driver memory against batch size: RSS after `validate` and after records assembly, for
datasets of 10,000 and 100,000 rows (issue 16 §1: the driver's memory must not grow with the batch).

    .venv/bin/python benchmarks/driver_memory.py [--rows 10000 100000] [--out driver_memory.json]

For each size a generated Parquet dataset (4 files; id, prompt, num_frames, seed and two
extra columns) goes, in a fresh Python process, through:
1. `validate`: the real code of `stt2v-ray validate` (`run.load_and_validate`) over the
   streamed Parquet: every field, id (duplicates) and column check.
2. records: one record per video written with the real writer (`RecordStore.commit`, an atomic
   file each, six timeline units apiece; four threads, 256 at a time), then results.parquet,
   timeline.parquet and run.json assembled with the real code (`records.assemble`,
   `results.write_run_json`), as a run's end does.
The records are synthetic (no video is rendered: that is what makes the path cheap); their
rows have every results column filled. RSS (psutil) is read after imports, after each phase;
`peak` is the process's high-water mark (getrusage). A size's child process is fresh, so one
size's garbage never counts against another's.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FILES = 4
UNITS = ("prepare", "chunk 0", "chunk 1", "chunk 2", "enhance 0", "encode")


def _mb(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


def generate(path: Path, rows: int) -> None:
    """A dataset folder of FILES Parquet files, written a batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    per_file, batch = -(-rows // FILES), 5000
    index = 0
    for f in range(FILES):
        with pq.ParquetWriter(path / f"part-{f:02d}.parquet", pa.schema([
                ("id", pa.string()), ("prompt", pa.string()), ("num_frames", pa.int64()), ("seed", pa.int64()),
                ("category", pa.string()), ("score", pa.float64())])) as w:
            end = min(rows, index + per_file)
            while index < end:
                n = min(batch, end - index)
                ids = range(index, index + n)
                w.write_table(pa.table({
                    "id": [f"video-{i:07d}" for i in ids],
                    "prompt": [f"a red circle moving left, take {i}" for i in ids],
                    "num_frames": [16 + i % 48 for i in ids],
                    "seed": list(ids),
                    "category": [("nature", "city", "abstract")[i % 3] for i in ids],
                    "score": [i / 7.0 for i in ids],
                }))
                index += n


def child(data: str, out: str) -> dict:
    """One size, in this (fresh) process: validate, then records written and assembled."""
    import psutil

    from stt2v_ray.records import RecordStore, assemble, batched, request_digest, settings_digest
    from stt2v_ray.results import RESULT_COLUMNS, write_run_json
    from stt2v_ray.run import load_and_validate
    from stt2v_ray.storage import join_uri

    proc = psutil.Process()
    rss = {"imports": proc.memory_info().rss}
    seconds = {}

    t = time.perf_counter()
    source, settings = load_and_validate(data, ["preset=tiny"], None)
    seconds["validate"], rss["validate"] = time.perf_counter() - t, proc.memory_info().rss
    peak_validate = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    t = time.perf_counter()
    store, sdigest, n = RecordStore(out), settings_digest(settings), 0

    def commit(item) -> None:
        request, extra = item
        row = {c: None for c in RESULT_COLUMNS}
        row.update(id=request.id, status="ok", video_uri=join_uri(out, "videos", f"{request.id}.mp4"), seed=request.seed,
                   num_frames=request.num_frames, fps=8.0, width=256, height=256, frames_sha256="0" * 64,
                   base_seconds=1.0, enhance_seconds=1.0, interpolate_seconds=0.0, encode_seconds=0.1, total_seconds=2.1,
                   request_digest=request_digest(request), settings_digest=sdigest, attempts=1)
        units = [(request.id, "base", "local", u, float(i), float(i) + 0.5, 0.5) for i, u in enumerate(UNITS)]
        store.commit(row, extra, units, (row["request_digest"], sdigest))

    # The writes are file-system bound: a few threads make 100,000 of them take minutes less. A
    # batch at a time, so no more than one batch of rows is ever held (as in a run).
    with ThreadPoolExecutor(4) as pool:
        for batch in batched(source.iter_requests(), 256):
            list(pool.map(commit, batch))
            n += len(batch)
    seconds["records_write"], rss["records_write"] = time.perf_counter() - t, proc.memory_info().rss

    t = time.perf_counter()
    counts = assemble(source.iter_requests(), source.extra_schema(), store, out)
    write_run_json(join_uri(out, "run.json"), {"videos": counts, "settings_digest": sdigest})
    seconds["assemble"], rss["assemble"] = time.perf_counter() - t, proc.memory_info().rss
    if counts != {"ok": n, "failed": 0, "missing": 0}:
        raise AssertionError(f"assembled {counts}, expected {n} ok")
    return {"rows": n, "rss_mb": {k: _mb(v) for k, v in rss.items()},
            "peak_mb": {"validate": _mb(peak_validate),
                        "end": _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)},
            "seconds": {k: round(v, 2) for k, v in seconds.items()}}


def measure(rows: int, workdir: Path) -> dict:
    data, out = workdir / f"data-{rows}", workdir / f"out-{rows}"
    generate(data, rows)
    cmd = [sys.executable, __file__, "--child", str(data), str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{rows} rows: the child failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(sizes: list[dict]) -> dict:
    """Per phase: RSS at each size, its growth over the imports, and the last size's ratio to the first."""
    first, last = sizes[0], sizes[-1]
    phases = {}
    for phase in ("validate", "records_write", "assemble"):
        grew = [s["rss_mb"][phase] - s["rss_mb"]["imports"] for s in sizes]
        phases[phase] = {"rss_mb": [s["rss_mb"][phase] for s in sizes], "above_imports_mb": [round(g, 1) for g in grew],
                         "ratio": round(last["rss_mb"][phase] / first["rss_mb"][phase], 3)}
    return {"rows": [s["rows"] for s in sizes], "phases": phases,
            "peak_ratio": round(last["peak_mb"]["end"] / first["peak_mb"]["end"], 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000], help="dataset sizes, smallest first")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--child", nargs=2, metavar=("DATA", "OUTPUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    with tempfile.TemporaryDirectory(prefix="driver-memory-") as tmp:
        sizes = [measure(n, Path(tmp)) for n in sorted(args.rows)]
    summary = report(sizes)
    print(f"{'phase':<14}" + "".join(f"{n:>12,} rows" for n in summary["rows"]) + "   ratio   (RSS MB; above imports)")
    for phase, f in summary["phases"].items():
        cells = "".join(f"{r:>9.1f} ({g:>+5.1f})" for r, g in zip(f["rss_mb"], f["above_imports_mb"], strict=True))
        print(f"{phase:<14}{cells}   {f['ratio']:.3f}")
    print(f"{'peak':<14}" + "".join(f"{s['peak_mb']['end']:>17.1f}" for s in sizes) + f"   {summary['peak_ratio']:.3f}")
    for s in sizes:
        print(f"{s['rows']:,} rows: " + ", ".join(f"{k} {v}s" for k, v in s["seconds"].items()))
    if args.out:
        args.out.write_text(json.dumps({"machine": {"python": platform.python_version(), "cpus": _cpus()},
                                        "sizes": sizes, "summary": summary}, indent=2) + "\n")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
