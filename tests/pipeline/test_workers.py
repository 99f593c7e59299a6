"""Stage workers without Ray: a failing enhancement never leaves its feeder blocked."""
import threading

import pytest
import torch

from stt2v_ray.config import RunSettings, deep_merge
from stt2v_ray.inputs.requests import VideoRequest
from stt2v_ray.pipeline.workers import EnhanceWorker
from stt2v_ray.presets import TINY


class ExplodingEnhancer:
    height, width, timesteps = 64, 64, [500, 0]

    def prepare(self, job):
        return None

    def encode(self, frames, start=0, seed=None):
        raise RuntimeError("enhancer blew up")


def test_failed_stream_releases_blocked_feeder():
    settings = RunSettings(**deep_merge(TINY.defaults, {"executor": "local"}))
    worker = EnhanceWorker(settings, "enhance-test")
    worker.components._enhancers[(32, 32)] = ExplodingEnhancer()
    request = VideoRequest(id="v", prompt="x", num_frames=40)
    worker.open_stream(request, (32, 32), max_pieces=1)

    fed = []

    def feeder():
        for _ in range(5):  # more pieces than the inbox holds: blocks until the stream ends
            worker.feed("v", torch.zeros(8, 3, 32, 32))
            fed.append(1)
        worker.feed("v", None)

    t = threading.Thread(target=feeder, daemon=True)
    t.start()
    with pytest.raises(RuntimeError, match="enhancer blew up"):
        list(worker.stream("v"))
    t.join(timeout=30)
    assert not t.is_alive(), "feeder still blocked after the stream failed"
    assert "v" not in worker._inbox
