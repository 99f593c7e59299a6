"""S3 uploads that fail: a render into a real S3 endpoint (moto, over HTTP) whose server goes
down during chosen uploads. The failure is real: the wrapper below only picks *when*; it
stops the moto server, lets s3fs/botocore make the real upload (which fails after botocore's
own retries), then starts the server again on the same port (moto's state lives in-process,
so the objects already stored stay). Then the same command runs again and must complete.
"""
from __future__ import annotations

import fnmatch
import time

import fsspec
import pyarrow.parquet as pq
import pytest
import s3fs
from moto.server import ThreadedMotoServer

from stt2v_ray.cli import main
from tests.faults.conftest import VIDEOS, sets, write_manifest


class Outage:
    """A moto server on a fixed port that can be stopped and started again."""

    def __init__(self, port: int = 0):
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        self.host, self.port = self.server.get_host_and_port()
        self.failures: list[str] = []

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def down(self) -> None:
        self.server.stop()

    def up(self) -> None:
        for _ in range(50):  # the old socket may linger a moment
            try:
                self.server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
                self.server.start()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto did not come back on port {self.port}")


def flaky_s3(outage: Outage, patterns: dict[str, int]) -> type[s3fs.S3FileSystem]:
    """An S3FileSystem whose uploads matching a pattern (bucket-relative glob) happen while the
    server is down, as many times as the pattern's count; every other call is s3fs's own."""

    class FlakyS3(s3fs.S3FileSystem):
        retries = 1  # s3fs's own retries of a failed call (see the test's storage options for botocore's)

        async def _put_file(self, lpath, rpath, *args, **kwargs):
            key = self._strip_protocol(rpath).split("/", 1)[1]
            for pattern, left in patterns.items():
                if left and fnmatch.fnmatch(key, pattern):
                    patterns[pattern] = left - 1
                    outage.failures.append(key)
                    outage.down()
                    try:
                        return await super()._put_file(lpath, rpath, *args, **kwargs)
                    finally:
                        outage.up()
            return await super()._put_file(lpath, rpath, *args, **kwargs)

    return FlakyS3


@pytest.fixture
def outage(s3_server, monkeypatch):
    """Its own moto server (s3_server's credentials in the environment), AWS_ENDPOINT_URL at it."""
    o = Outage()
    monkeypatch.setenv("AWS_ENDPOINT_URL", o.endpoint_url)
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem(endpoint_url=o.endpoint_url).mkdir("faults")
    yield o
    fsspec.register_implementation("s3", s3fs.S3FileSystem, clobber=True)  # undo a test's flaky class
    s3fs.S3FileSystem.clear_instance_cache()
    o.server.stop()


def _rows(fs, out) -> dict[str, dict]:
    with fs.open(f"{out}/results.parquet", "rb") as f:
        return {r["id"]: r for r in pq.read_table(f).to_pylist()}


def test_failing_uploads_lose_no_video(tmp_path, outage, reference, monkeypatch, capsys):
    """Run 1: b's MP4 upload, c's record upload and one of d's chunk checkpoints fail.
    b is recorded failed, c is not recorded (its MP4 is there), d is ok (checkpoints are best
    effort). Nothing partial under videos/. The same command again renders b and c, skips a
    and d; every video's frames equal a clean local run's."""
    patterns = {"out/videos/b.mp4": 1, "out/records/c.json": 1, "out/_work/d/*/base-00001.safetensors": 1}
    fsspec.register_implementation("s3", flaky_s3(outage, patterns), clobber=True)
    fs = fsspec.filesystem("s3", endpoint_url=outage.endpoint_url)
    out = "s3://faults/out"
    manifest = write_manifest(tmp_path / "m.yaml", VIDEOS)
    # One attempt each, in botocore and in s3fs: the outage's upload fails in a tenth of a second,
    # not after their retries (~8 s); what is under test is the render's answer to the failure.
    retries = ["--storage-option", "config_kwargs.retries.max_attempts=1"]
    command = ["render", str(manifest), "--output", out, *retries] + sets("executor=local")

    assert main(command) == 1
    assert len(outage.failures) == 3 and not any(patterns.values())  # each fault happened, once
    err = capsys.readouterr().err
    assert "could not record c" in err
    rows = _rows(fs, out)
    assert sorted(rows) == ["a", "b", "d"]  # c: rendered, not recorded -> missing from the tables
    assert rows["a"]["status"] == "ok" and rows["d"]["status"] == "ok" and rows["b"]["status"] == "failed"
    assert "Could not connect to the endpoint URL" in rows["b"]["error"]  # botocore's own error, recorded
    videos = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{out}/videos", refresh=True))
    assert "b.mp4" not in videos and {"a.mp4", "c.mp4", "d.mp4"} <= set(videos)
    assert all(not n.startswith(".") and ".tmp-" not in n for n in videos)  # nothing partial
    assert {rows[v]["frames_sha256"] for v in "ad"} == {reference["a"], reference["d"]}

    # The same command again: a and d skipped, b (failed) and c (no record) rendered; all ok.
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "a: skipped" in err and "d: skipped" in err and "b: skipped" not in err and "c: skipped" not in err
    rows = _rows(fs, out)
    assert {v: r["status"] for v, r in rows.items()} == dict.fromkeys("abcd", "ok")
    assert {v: r["frames_sha256"] for v, r in rows.items()} == reference
    videos = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{out}/videos", refresh=True))
    assert [v for v in videos if v.endswith(".mp4")] == ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    assert not fs.exists(f"{out}/_work/b") and not fs.exists(f"{out}/_work/d")
