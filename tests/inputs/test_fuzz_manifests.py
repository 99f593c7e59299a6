"""Fuzz `stt2v-ray validate` with random manifests and datasets: it never prints a traceback, exits 0 or 2.

Random structures (any JSON/YAML value where a mapping, list or field is expected), random field
values, hostile image references and random --set overrides, written as JSON, as YAML, as raw
text, or as a Parquet dataset. No example reaches the network: DNS lookups fail loudly.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import socket
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stt2v_ray.cli import main
from stt2v_ray.inputs.requests import FIELDS
from stt2v_ray.results import RESULT_COLUMNS

IMAGE_REFS = ["a.png", "sub/b.png", "../x.png", "../../../../etc/hostname", "/etc/passwd", "file:///etc/passwd",
              "http://169.254.169.254/latest/meta-data", "http://[fd00:ec2::254]/", "http://metadata.google.internal/",
              "https://u:pw@cdn.example.com/x.png?X-Amz-Signature=abc", "s3://bucket/x.png", "http://[::1", ".", "",
              "memory://x", "C:\\x.png", "%2e%2e/x", "\x00", "img.png"]
KEYS = list(FIELDS) + ["status", "input_status", "video_uri", "frames", "colour", ""]
SETS = ["enhance.steps=3", "preset=toy", "preset=nope", "inputs.max_image_bytes=1", "inputs.allow_image_uris=[/]",
        "inputs.allow_image_uris=[a?b]", "inputs=3", "x=", "=", ".=1", "t2v.chunk_frames=[", "ray.base=null",
        "inputs.max_image_pixels=-1", "executor=local"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(IMAGE_REFS),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
entry = st.one_of(st.dictionaries(st.sampled_from(KEYS), st.one_of(scalars, values), max_size=6), values)
settings_map = st.one_of(
    st.fixed_dictionaries({}, optional={"preset": st.sampled_from(["tiny", "toy", "streamingsvd", "x", 3]),
                                        "enhance": values, "inputs": values, "t2v": values}),
    values)
manifest = st.one_of(
    st.fixed_dictionaries({}, optional={"settings": settings_map, "defaults": entry,
                                        "prompts": st.one_of(st.lists(entry, max_size=5), values),
                                        "extra": values}),
    values)


def _sanitize(value):
    """JSON cannot hold NaN/inf as plain JSON; YAML can. Keep them for YAML, turn them to text for JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_sanitize(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _sanitize(v) for k, v in value.items()}
    return value


def _validate(path: str, overrides: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["validate", path]
    for text in overrides:
        argv += ["--set", text]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own usage errors
            code = exit_.code
    return code, out.getvalue() + err.getvalue()


def _no_network(*args, **kwargs):
    raise socket.gaierror("no network in the fuzz test")


def _check(path: str, overrides: list[str]) -> None:
    real = socket.getaddrinfo
    socket.getaddrinfo = _no_network
    try:
        code, output = _validate(path, overrides)
    finally:
        socket.getaddrinfo = real
    assert code in (0, 2), output
    assert "Traceback" not in output, output
    assert "hunter2" not in output and "X-Amz-Signature=abc" not in output, output


# STT2V_FUZZ_EXAMPLES=2000 for a longer hunt; the default keeps the file near 30 s on a small CI machine.
EXAMPLES = int(os.environ.get("STT2V_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(doc=manifest, form=st.sampled_from(["yaml", "json", "yml-flow"]), overrides=st.lists(st.sampled_from(SETS), max_size=2))
def test_validate_never_crashes_on_manifests(doc, form, overrides):
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "a.png"), "wb") as f:
            f.write(b"\x89PNG not really")
        if form == "json":
            path, text = os.path.join(folder, "m.json"), json.dumps(_sanitize(doc))
        else:
            path = os.path.join(folder, "m.yaml")
            text = yaml.safe_dump(doc, default_flow_style=form == "yml-flow", allow_unicode=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        _check(path, overrides)


@FUZZ
@given(text=st.one_of(st.text(max_size=80), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))),
       suffix=st.sampled_from([".yaml", ".json", ".txt", ""]))
def test_validate_never_crashes_on_raw_text(text, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m" + suffix)
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(text)
        _check(path, [])


column = st.one_of(
    st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=1, max_size=4),
    st.lists(st.one_of(st.none(), st.floats()), min_size=1, max_size=4),
    st.lists(st.one_of(st.none(), st.text(max_size=8), st.sampled_from(IMAGE_REFS)), min_size=1, max_size=4),
    st.lists(st.one_of(st.none(), st.booleans()), min_size=1, max_size=4),
)


@settings(max_examples=max(1, EXAMPLES * 2 // 5), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(columns=st.dictionaries(st.sampled_from(KEYS + list(RESULT_COLUMNS)), column, min_size=1, max_size=5),
       overrides=st.lists(st.sampled_from(SETS), max_size=1))
def test_validate_never_crashes_on_parquet_rows(columns, overrides):
    n = min(len(v) for v in columns.values())
    table = pa.table({name: values[:n] for name, values in columns.items() if name})
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "d.parquet")
        pq.write_table(table, path)
        _check(path, overrides)
