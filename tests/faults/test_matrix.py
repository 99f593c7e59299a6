"""The rule of the fault matrix: every fault kind keeps a case that `make test` runs (not marked slow)."""
from __future__ import annotations

import importlib

# fault kind -> the case that covers it in `make test` (module, test function)
KINDS = {
    "base actor SIGKILL": ("test_actor_faults", "test_sigkill_base_actor_mid_video"),
    "enhancer shard of a 3-shard gang SIGKILL": ("test_actor_faults", "test_sigkill_enhancer_shard_of_three_mid_video"),
    "interpolation and writer SIGKILL": ("test_actor_faults", "test_sigkill_interpolation_and_writer_mid_video"),
    "node removal": ("test_actor_faults", "test_node_with_the_base_actor_removed_mid_video"),
    "driver SIGKILL, then the same command": ("test_driver_kill", "test_sigkill_driver_then_same_command_resumes"),
    "driver SIGTERM": ("test_driver_kill", "test_sigterm_lets_videos_in_flight_finish_and_writes_the_tables"),
    "S3 uploads failing": ("test_s3_faults", "test_failing_uploads_lose_no_video"),
}


def _marks(obj) -> set[str]:
    marks = getattr(obj, "pytestmark", [])
    return {m.name for m in (marks if isinstance(marks, list) else [marks])}


def test_every_fault_kind_runs_in_make_test():
    for kind, (module_name, name) in KINDS.items():
        module = importlib.import_module(f"tests.faults.{module_name}")
        func = getattr(module, name, None)
        assert func is not None, f"{kind}: {module_name}.{name} is gone; name the case that covers it now"
        assert "slow" not in _marks(module) | _marks(func), f"{kind}: its only case is marked slow (`make test` skips it)"
