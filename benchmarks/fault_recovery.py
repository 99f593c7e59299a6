"""One SIGKILLed base actor in a 4-video Ray batch: how many videos survive, in how many attempts.

    .venv/bin/python benchmarks/fault_recovery.py [--out fault_recovery.json] [--timeout 300]

Four tiny videos (the fault tests' manifest: 17 frames, three base chunks each) render on an
embedded Ray cluster (`address="local"`, 4 CPUs, 4 simulated GPUs) with one base actor. As soon
as that actor's process title says it is streaming a video's base chunks, it is SIGKILLed by
pid. The script reports each video's status, attempts and error, the exit code and wall time.

It only uses what every version of the Ray executor has (`RayExecutor.start`, `.bases`,
`StageActor.pid`), so the same scenario runs on older code: put that code first on PYTHONPATH.
The render runs in a child process with a bound (`--timeout`): code without bounded waits may
hang; the child's processes are then killed by pid and the run is reported as hung.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAST = ["t2v.steps=2", "enhance.steps=4", "enhance.strength=0.5", "enhance.chunk_frames=8", "enhance.overlap_frames=3",
        "t2v.chunk_frames=8", "t2v.cond_frames=4", "encode.preset=ultrafast"]
POOLS = ["executor=ray", "ray.base.num_gpus=1", "ray.base.num_cpus=0", "ray.enhance.num_cpus=0",
         "ray.enhance.num_gpus=0.5", "ray.interpolate.num_cpus=0.5", "ray.write.num_cpus=0.5"]
VIDEOS = [{"id": i, "prompt": p, "num_frames": 17, "seed": s}
          for i, p, s in [("a", "a red circle", 1), ("b", "a blue square", 2), ("c", "a green ball", 3), ("d", "a gray box", 4)]]


def child(workdir: Path) -> dict:
    """In this process: an embedded cluster, the render, and a watcher that kills the base actor once."""
    import psutil
    import pyarrow.parquet as pq
    import ray
    import yaml

    import stt2v_ray
    from stt2v_ray.cli import main
    from stt2v_ray.runtime.executor import RayExecutor

    manifest = workdir / "m.yaml"
    manifest.write_text(yaml.safe_dump({"settings": {"preset": "tiny"}, "prompts": VIDEOS}))
    ray.init(address="local", num_cpus=4, num_gpus=4, include_dashboard=False, log_to_driver=False)
    struck: dict = {}

    def watch(executor) -> None:
        pid = ray.get(executor.bases[0].pid.remote())
        while not struck:
            try:
                title = " ".join(psutil.Process(pid).cmdline())
            except psutil.Error:
                return
            if title.startswith(("ray::StageActor.stream", "ray::BaseActor.base_chunks")):  # old code, current code
                struck.update(pid=pid, title=title.strip(), at=round(time.monotonic() - t0, 1))
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    real_start = RayExecutor.start

    def start(self, storage_options):
        real_start(self, storage_options)
        threading.Thread(target=watch, args=(self,), daemon=True).start()

    RayExecutor.start = start
    args = ["render", str(manifest), "--output", str(workdir / "out")]  # progress goes to the log
    args += [a for s in FAST + POOLS for a in ("--set", s)]
    t0 = time.monotonic()
    code = main(args)
    wall = time.monotonic() - t0
    rows = pq.read_table(workdir / "out" / "results.parquet").to_pylist()
    return {"code": str(Path(stt2v_ray.__file__).parents[1]), "exit_code": code, "wall_s": round(wall, 1), "struck": struck,
            "videos": {r["id"]: {"status": r["status"], "attempts": r.get("attempts"),
                                 "error": (r["error"] or "")[:160] or None} for r in rows}}


def kill_tree(proc: subprocess.Popen) -> None:
    """The child and every process under it (its Ray cluster), by pid."""
    import psutil

    try:
        procs = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def run(timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="fault-recovery-") as tmp:
        env = {**os.environ}
        env.pop("RAY_ADDRESS", None)
        env["RAY_AUTH_MODE"] = "disabled"  # a private embedded cluster: no token to hand around
        env.setdefault("RAY_raylet_start_wait_time_s", "180")  # a loaded machine starts a raylet slowly
        log = Path(tmp) / "child.log"
        t0 = time.monotonic()
        with log.open("w") as f:
            proc = subprocess.Popen([sys.executable, __file__, "--child", tmp], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=f, text=True, start_new_session=True)
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_tree(proc)
                proc.communicate()
                return {"hung": True, "wall_s": round(time.monotonic() - t0, 1), "log_tail": log.read_text()[-1500:]}
        if proc.returncode != 0 or not out.strip():
            return {"crashed": proc.returncode, "log_tail": log.read_text()[-3000:]}
        return {"hung": False, **json.loads(out.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before the render counts as hung")
    p.add_argument("--label", default="current", help="a name for this code in the report (e.g. a commit)")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    result = {"label": args.label, **run(args.timeout)}
    if "videos" in result:
        ok = sum(v["status"] == "ok" for v in result["videos"].values())
        print(f"{args.label}: {ok}/{len(result['videos'])} videos ok, exit {result['exit_code']}, {result['wall_s']}s, "
              f"base actor pid {result['struck'].get('pid')} killed at {result['struck'].get('at', 0):.1f}s")
        for vid, v in result["videos"].items():
            print(f"  {vid}: {v['status']:<6} attempts {v['attempts']}  {v['error'] or ''}")
    else:
        print(f"{args.label}: {'hung past the timeout' if result.get('hung') else 'crashed'}\n{result.get('log_tail', '')}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
