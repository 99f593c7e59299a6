"""Thin Ray actors around the Ray-free stage workers (stt2v_ray.pipeline.workers)."""
from __future__ import annotations

import os

import ray

from stt2v_ray.config import RunSettings


@ray.remote
class StageActor:
    """Holds one worker; `call` runs a method, `stream` runs a generator method (Ray streaming)."""

    def __init__(self, worker_path: str, settings_json: str, name: str, storage_options: dict | None):
        import importlib

        import torch

        settings = RunSettings.model_validate_json(settings_json)
        # The same thread count as every other executor: CPU results depend on it.
        torch.set_num_threads(settings.cpu_threads)
        module, cls = worker_path.rsplit(".", 1)
        worker_cls = getattr(importlib.import_module(module), cls)
        self.worker = worker_cls(settings, name, storage_options)

    def call(self, method: str, *args):
        return getattr(self.worker, method)(*args)

    def stream(self, method: str, *args):
        # ray.cancel() of a running actor task only sets a flag: stop at the next piece, so an
        # abandoned video's generator frees its actor instead of running on.
        context = ray.get_runtime_context()
        pieces = getattr(self.worker, method)(*args)
        try:
            for item in pieces:
                if context.is_canceled():
                    return
                yield item
        finally:
            pieces.close()  # the worker's own cleanup (finally blocks) runs now, not at garbage collection

    def pid(self) -> int:
        return os.getpid()
