"""Shared fixtures. `s3_server`/`s3_bucket`: a real S3 HTTP endpoint (moto) on loopback."""
from __future__ import annotations

import urllib.request
import uuid
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str


@pytest.fixture(scope="session")
def s3_server():
    """One moto S3 server for the session, with fake credentials in the environment."""
    from moto.server import ThreadedMotoServer

    patch = pytest.MonkeyPatch()
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # A region in client_kwargs breaks bucket creation on moto; the env var is enough.
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        patch.delenv(name, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()
        patch.undo()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh, empty bucket on a reset server; AWS_ENDPOINT_URL points at it for this test."""
    import s3fs

    request = urllib.request.Request(f"{s3_server.endpoint_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()
    s3fs.S3FileSystem.clear_instance_cache()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(endpoint_url=s3_server.endpoint_url).mkdir(bucket)
    yield bucket
    s3fs.S3FileSystem.clear_instance_cache()
