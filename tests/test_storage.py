"""storage: options from the environment, URI joining, atomic writes (local and S3), redaction."""
from __future__ import annotations

import os
import stat

import pytest
import s3fs

from stt2v_ray.storage import (
    atomic_output,
    atomic_write_bytes,
    filesystem,
    is_local,
    join_uri,
    parent_uri,
    parse_storage_options,
    redact,
    resolve_uri,
    storage_options_for,
)


def test_storage_options_endpoint_from_env(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    assert storage_options_for("s3://b/k", None) == {"endpoint_url": "http://minio:9000"}
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3only:9000")
    assert storage_options_for("s3://b/k", {"key": "K", "secret": "S"}) == {
        "key": "K", "secret": "S", "endpoint_url": "http://s3only:9000"}
    # Given options win; other protocols get nothing from the environment.
    assert storage_options_for("s3://b/k", {"endpoint_url": "http://x"}) == {"endpoint_url": "http://x"}
    assert storage_options_for("s3://b", {"client_kwargs": {"endpoint_url": "http://y"}}) == {
        "client_kwargs": {"endpoint_url": "http://y"}}
    assert storage_options_for("/local/path", None) == {}
    assert storage_options_for("gs://b/k", {"token": "anon"}) == {"token": "anon"}


def test_parse_storage_options():
    assert parse_storage_options(["anon=true", "client_kwargs.region_name=eu-west-1", "client_kwargs.verify=false",
                                  "default_block_size=1048576", "profile="]) == {
        "anon": True, "client_kwargs": {"region_name": "eu-west-1", "verify": False},
        "default_block_size": 1048576, "profile": ""}
    with pytest.raises(ValueError, match="expected key=value"):
        parse_storage_options(["anon"])
    with pytest.raises(ValueError, match="empty key segment"):
        parse_storage_options(["a..b=1"])
    with pytest.raises(ValueError, match="'a' is already set to a value"):
        parse_storage_options(["a=1", "a.b=2"])


def test_uri_helpers(tmp_path):
    assert join_uri("s3://b/dir", "x", "y.mp4") == "s3://b/dir/x/y.mp4"
    assert join_uri("s3://b/dir/", "../x.png") == "s3://b/x.png"
    assert join_uri("/tmp/a", "b") == "/tmp/a/b"
    assert join_uri("file:///tmp/a", "./b") == "file:///tmp/a/b"
    with pytest.raises(ValueError, match="must be a relative path"):
        join_uri("s3://b", "/abs")
    assert resolve_uri("s3://b/d", "i.png") == "s3://b/d/i.png"
    assert resolve_uri("s3://b/d", "/abs/i.png") == "/abs/i.png"
    assert resolve_uri("/d", "gs://x/i.png") == "gs://x/i.png"
    assert parent_uri("s3://b/d/f.parquet") == "s3://b/d" and parent_uri("/a/b/") == "/a"
    assert is_local("/x") and is_local("file:///x") and is_local("rel/x") and not is_local("s3://b/x")
    fs, path = filesystem(str(tmp_path / "f"))
    assert path == str(tmp_path / "f") and "file" in fs.protocol


def test_atomic_output_local_success_and_mode(tmp_path):
    target = tmp_path / "new" / "dir" / "video.mp4"
    with atomic_output(str(target)) as tmp:
        assert tmp.endswith(".mp4") and os.path.dirname(tmp) == str(target.parent)
        assert not target.exists()
        with open(tmp, "wb") as f:
            f.write(b"frames")
    assert target.read_bytes() == b"frames"
    assert os.listdir(target.parent) == ["video.mp4"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_atomic_output_local_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(str(target)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.json"]
    with pytest.raises(RuntimeError):
        with atomic_output(str(tmp_path / "never.bin")):
            raise RuntimeError("x")
    assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_write_bytes_local(tmp_path):
    atomic_write_bytes(f"file://{tmp_path}/a/b.txt", b"hello")
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"hello"
    atomic_write_bytes(str(tmp_path / "a" / "b.txt"), b"bye")
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"bye"
    assert os.listdir(tmp_path / "a") == ["b.txt"]


def temp_uploads() -> set[str]:
    import tempfile
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("stt2v-upload-")}


def test_atomic_output_s3(s3_bucket):
    fs = s3fs.S3FileSystem()
    before = temp_uploads()
    uri = f"s3://{s3_bucket}/runs/r1/video.mp4"
    with atomic_output(uri, storage_options_for(uri, None)) as tmp:
        assert tmp.endswith(".mp4")
        with open(tmp, "wb") as f:
            f.write(b"mp4 bytes")
        assert not fs.exists(uri)
    assert fs.cat(uri) == b"mp4 bytes"
    atomic_write_bytes(f"s3://{s3_bucket}/runs/r1/run.json", b"{}", storage_options_for(uri, None))
    assert fs.cat(f"s3://{s3_bucket}/runs/r1/run.json") == b"{}"
    assert temp_uploads() == before


def test_atomic_output_s3_failure_leaves_nothing(s3_bucket):
    fs = s3fs.S3FileSystem()
    before = temp_uploads()
    uri = f"s3://{s3_bucket}/runs/r1/video.mp4"
    with pytest.raises(RuntimeError, match="encoder died"):
        with atomic_output(uri, storage_options_for(uri, None)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            raise RuntimeError("encoder died")
    fs.invalidate_cache()
    assert fs.find(s3_bucket) == []
    assert temp_uploads() == before


def test_redact():
    options = {"key": "AKIA", "secret": "s", "token": "t", "session_token": "x", "anon": False,
               "endpoint_url": "http://e", "client_kwargs": {"region_name": "r", "aws_secret_access_key": "z"},
               "password": "p", "Access_Key_Id": "k"}
    assert redact(options) == {"key": "***", "secret": "***", "token": "***", "session_token": "***", "anon": False,
                               "endpoint_url": "http://e", "client_kwargs": {"region_name": "r", "aws_secret_access_key": "***"},
                               "password": "***", "Access_Key_Id": "***"}
    assert options["key"] == "AKIA"  # the input is not modified


def test_render_with_storage_options_the_filesystem_refuses_exits_2(tmp_path, capsys):
    """s3fs takes any keyword and fails only at its first request: the CLI checks before rendering,
    names the keys (never the values) and exits 2 without a traceback."""
    from stt2v_ray import cli

    manifest = tmp_path / "m.yaml"
    manifest.write_text("settings: {preset: tiny}\nprompts:\n  - {id: a, prompt: a red circle, num_frames: 8}\n")
    code = cli.main(["render", str(manifest), "--output", "s3://bucket/out", "--storage-option", "retries=1",
                     "--storage-option", "secret=TOPSECRET", "--storage-option", "endpoint_url=http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2
    assert "does not accept these storage options (endpoint_url, retries, secret)" in err
    assert "unexpected keyword argument 'retries'" in err
    assert "TOPSECRET" not in err and "Traceback" not in err
