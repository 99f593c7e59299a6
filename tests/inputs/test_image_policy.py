"""Inputs that cannot hurt: the image URI policy, size caps, redaction, every error in one run."""
from __future__ import annotations

import json
import os
import socket
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from stt2v_ray.cli import main
from stt2v_ray.config import InputSettings
from stt2v_ray.inputs import InputIssue, VideoRequest, open_input
from stt2v_ray.inputs import source as source_module
from stt2v_ray.inputs.images import ImagePolicy, with_input_roots
from stt2v_ray.pipeline import video as video_module
from stt2v_ray.storage import read_capped, redact_text, redact_uri


def write(tmp_path, text: str, name: str = "m.yaml") -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def spies(monkeypatch):
    """Every filesystem the validator asks for, and every DNS lookup: refused URIs must reach neither."""
    import fsspec.core

    seen = {"fs": [], "dns": []}
    real_fs = fsspec.core.url_to_fs

    def fs_spy(uri, **options):
        if not str(uri).endswith(".yaml"):  # the manifest itself is read, of course
            seen["fs"].append(uri)
        return real_fs(uri, **options)

    def dns_spy(host, port, *args, **kwargs):
        seen["dns"].append(host)
        raise AssertionError(f"unexpected DNS lookup of {host}")

    monkeypatch.setattr(fsspec.core, "url_to_fs", fs_spy)
    monkeypatch.setattr(socket, "getaddrinfo", dns_spy)
    return seen


REFUSED = [
    ("../../../../etc/hostname", "'..' climbs out of the input's folder"),
    ("/etc/passwd", "an absolute path outside the input's folder"),
    ("file:///etc/passwd", "file:// URIs are not allowed"),
    ("http://169.254.169.254/latest/meta-data", "link-local/metadata address 169.254.169.254"),
    ("http://[fd00:ec2::254]/", "link-local/metadata address fd00:ec2::254"),
    ("http://metadata.google.internal/", "metadata host metadata.google.internal"),
    ("http://[::ffff:169.254.169.254]/x", "link-local/metadata address 169.254.169.254"),
    ("https://cdn.example.com/a.png", "protocol https:// is not allowed"),
    ("s3://bucket/a.png", "protocol s3:// is not allowed"),
    ("http://[::1", "not a valid URI"),  # shown as http://***: an unparsable URI may hold anything
]


@pytest.mark.parametrize("ref, why", REFUSED)
def test_refused_uris_are_reported_and_never_probed(tmp_path, spies, ref, why):
    uri = write(tmp_path, f"prompts: [{{prompt: x, image: {json.dumps(ref)}}}]")
    issues = open_input(uri).validate([])
    assert len(issues) == 1, issues
    issue = issues[0]
    assert (issue.file, issue.location, issue.field) == (uri, "prompts[0]", "image")
    assert issue.message.startswith(f"{redact_uri(ref)}: {why}")
    assert spies["fs"] == [] and spies["dns"] == []


@pytest.mark.parametrize("ref, _", REFUSED[:6])
def test_refused_uris_are_refused_again_where_images_are_opened(tmp_path, monkeypatch, ref, _):
    opened = []
    monkeypatch.setattr(video_module, "load_image", lambda *a, **k: opened.append(a))
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: opened.append(a))
    resolved = ref if "://" in ref or ref.startswith("/") else os.path.normpath(str(tmp_path / ref))
    request = VideoRequest(prompt="x", image=resolved, num_frames=2)
    inputs = InputSettings(allow_image_uris=[str(tmp_path)])
    with pytest.raises(video_module.ImageRefused, match="image refused"):
        video_module.make_job(request, None, inputs)
    assert opened == []


def test_every_kind_of_error_in_one_run(tmp_path, capsys):
    # A settings error, a field error on an entry that also repeats an id, a refused image, a column
    # clash and a missing image: one run of `validate` names them all, with file, row and field.
    uri = write(tmp_path, """
        settings: {enhance: {stepz: 3}}
        prompts:
          - {id: a, prompt: fine}
          - {id: a, prompt: x, num_frames: 0, image: ../../../../etc/hostname}
          - {id: c, prompt: z, status: ok}
          - {id: d, prompt: w, image: missing.png}
    """)
    assert main(["validate", uri]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{uri}: 6 error(s):",
        f"{uri}: settings: enhance.stepz: unknown field (expected one of: blend_target, blending, chunk_frames, enabled, "
        "eta, guidance_scale, height, i2vgen, negative_prompt, noise, overlap_frames, prompt, scale, steps, strength, width)",
        f"{uri}: prompts[1]: num_frames: Input should be greater than or equal to 1",
        f"{uri}: prompts[1]: id: duplicate id 'a' (also used by prompts[0])",
        f"{uri}: prompts[1]: image: ../../../../etc/hostname: '..' climbs out of the input's folder {tmp_path}; "
        "allow it with --allow-image-uri PREFIX or --set inputs.allow_image_uris=[PREFIX]",
        f"{uri}: prompts[2]: status: 'status' is a column of results.parquet, not a request field "
        "(manifest entries carry no extra columns)",
        f"{uri}: prompts[3]: image: image not found: {tmp_path / 'missing.png'}",
    ]


def test_parquet_errors_of_every_kind_and_a_column_clash(tmp_path):
    table = pa.table({"id": ["a", "a", "b"], "prompt": ["p", "q", "r"], "num_frames": [2, 0, 2],
                      "image": [None, None, "/etc/passwd"], "status": ["x"] * 3, "input_status": ["y"] * 3,
                      "width": [1, 2, 3]})
    pq.write_table(table, tmp_path / "d.parquet")
    file = str(tmp_path / "d.parquet")
    issues = open_input(file).validate([])
    assert [(i.location, i.field) for i in issues] == [
        ("columns", "status"), ("row 1", "num_frames"), ("row 1", "id"), ("row 2", "image")]
    assert "'status' is a results column, so it is kept as 'input_status'" in issues[0].message
    # A results-column name alone is no clash: it is kept as input_width.
    assert all(i.field != "width" for i in issues)


def test_errors_are_capped_and_counted(tmp_path):
    pq.write_table(pa.table({"prompt": ["x"] * 250, "num_frames": [0] * 250}), tmp_path / "d.parquet")
    issues = open_input(str(tmp_path / "d.parquet")).validate([])
    assert len(issues) == source_module.MAX_ISSUES + 1
    assert issues[-1].message == f"... and 50 more error(s) not listed (the first {source_module.MAX_ISSUES} are above)"


def test_allowed_prefixes_from_the_flag_and_from_set(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    uri = write(tmp_path, "prompts: [{prompt: x, image: ../images/a.png}, {prompt: y, image: /etc/hostname}]", "m/m.yaml")
    assert main(["validate", uri]) == 2
    assert "2 error(s)" in capsys.readouterr().err
    assert main(["validate", uri, "--allow-image-uri", str(images)]) == 2
    err = capsys.readouterr().err
    assert "1 error(s)" in err and "/etc/hostname: an absolute path" in err
    assert main(["validate", uri, "--allow-image-uri", str(images), "--allow-image-uri", "/etc/hostname"]) == 0
    assert open_input(uri).validate([f"inputs.allow_image_uris=[{images}, /etc/hostname]"]) == []
    # A prefix allows at a path boundary only: /x/images does not allow /x/images2.
    assert ImagePolicy(allowed=(str(images),)).refusal(str(images) + "2/a.png")


def test_a_manifest_cannot_widen_its_own_policy(tmp_path):
    uri = write(tmp_path, "settings: {inputs: {allow_image_uris: [/]}}\nprompts: [{prompt: x, image: /etc/hostname}]")
    issues = open_input(uri).validate([])
    assert [(i.location, i.field) for i in issues] == [("settings", "inputs"), ("prompts[0]", "image")]


def test_a_symlink_out_of_the_folder_is_refused(tmp_path, spies):
    (tmp_path / "m").mkdir()
    os.symlink("/etc/hostname", tmp_path / "m" / "link.png")
    uri = write(tmp_path, "prompts: [{prompt: x, image: link.png}]", "m/m.yaml")
    (issue,) = open_input(uri).validate([])
    assert issue.field == "image" and "outside the input's folder" in issue.message
    assert spies["fs"] == []


def test_a_host_that_resolves_to_link_local_is_refused_even_when_allowed(monkeypatch):
    lookups = []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        lookups.append(host)
        ip = {"evil.example": "169.254.12.34", "v6.example": "fe80::1", "good.example": "93.184.216.34"}[host]
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (ip, port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    policy = ImagePolicy(allowed=("http://evil.example/", "http://v6.example/", "https://good.example/img"))
    assert "host 'evil.example' resolves to a link-local/metadata address 169.254.12.34" in policy.refusal(
        "http://evil.example/a.png")
    assert "fe80::1" in policy.refusal("http://v6.example/a.png")
    assert policy.refusal("https://good.example/img/a.png") == ""
    assert lookups == ["evil.example", "v6.example", "good.example"]
    # Literal addresses and userinfo tricks are refused without any lookup, even under an allowed prefix.
    lookups.clear()
    allowing = ImagePolicy(allowed=("http://169.254.169.254/", "http://metadata.google.internal/"))
    assert "169.254.169.254" in allowing.refusal("http://169.254.169.254/latest/meta-data")
    assert "metadata host" in allowing.refusal("http://metadata.google.internal/computeMetadata/v1/")
    assert "169.254.169.254" in policy.refusal("http://evil.example@169.254.169.254/")
    assert lookups == []


def test_the_inputs_own_protocol_under_its_prefix():
    policy = ImagePolicy(roots=("s3://bucket/prompts",))
    assert policy.refusal("s3://bucket/prompts/img/a.png") == ""
    assert "outside the input's prefix" in policy.refusal("s3://bucket/other/a.png")
    assert "'..' climbs out" in policy.refusal("s3://bucket/prompts/../secret.png", "../secret.png")
    assert "'..' climbs out" in policy.refusal("s3://bucket/prompts/%2e%2e/secret.png")
    assert "protocol gs:// is not allowed" in policy.refusal("gs://bucket/prompts/a.png")


def test_the_executor_gets_the_inputs_folder_as_an_allowed_prefix(tmp_path):
    uri = write(tmp_path, "prompts: [{prompt: x}]")
    source = open_input(uri)
    settings = with_input_roots(source.settings(["inputs.allow_image_uris=[/data]"]), source.image_roots())
    assert settings.inputs.allow_image_uris == ["/data", str(tmp_path)]


# ---------------------------------------------------------------- caps


def test_byte_cap_at_validation(tmp_path):
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "a.png")
    size = (tmp_path / "a.png").stat().st_size
    uri = write(tmp_path, "prompts: [{prompt: x, image: a.png}]")
    assert open_input(uri).validate([]) == []
    assert open_input(uri).validate([f"inputs.max_image_bytes={size - 1}"]) == [InputIssue(
        uri, "prompts[0]", "image", f"image {tmp_path / 'a.png'} is {size} bytes, more than inputs.max_image_bytes ({size - 1})")]


def test_byte_cap_reads_at_most_cap_plus_one(tmp_path, monkeypatch):
    import fsspec.implementations.local as local

    (tmp_path / "big.bin").write_bytes(b"x" * 1000)
    assert read_capped(str(tmp_path / "big.bin"), None, 1000) == b"x" * 1000
    with pytest.raises(ValueError, match="1000 bytes, more than the limit of 999"):
        read_capped(str(tmp_path / "big.bin"), None, 999)
    # A backend that does not know the size: read stops at cap + 1 bytes.
    reads = []
    real_read = local.LocalFileOpener.read

    def spy_read(self, n=-1):
        reads.append(n)
        return real_read(self, n)

    monkeypatch.setattr(local.LocalFileSystem, "size", lambda self, path: None)
    monkeypatch.setattr(local.LocalFileOpener, "read", spy_read)
    with pytest.raises(ValueError, match="more than the limit of 10 bytes"):
        read_capped(str(tmp_path / "big.bin"), None, 10)
    assert reads == [11]


def test_pixel_cap_and_decompression_bomb_guard_at_open(tmp_path, monkeypatch):
    Image.new("RGB", (100, 50), (9, 9, 9)).save(tmp_path / "a.png")
    request = VideoRequest(prompt="x", image=str(tmp_path / "a.png"), num_frames=2)
    allowed = [str(tmp_path)]
    job = video_module.make_job(request, None, InputSettings(allow_image_uris=allowed))
    assert tuple(job.image.shape) == (3, 50, 100)
    with pytest.raises(video_module.ImageRefused, match="100x50 = 5000 pixels, more than the limit of 4999"):
        video_module.make_job(request, None, InputSettings(allow_image_uris=allowed, max_image_pixels=4999))
    with pytest.raises(video_module.ImageRefused, match="more than the limit of 10"):
        video_module.make_job(request, None, InputSettings(allow_image_uris=allowed, max_image_bytes=10))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL's own guard, kept as a second line
    with pytest.raises(video_module.ImageRefused, match="decompression bomb"):
        video_module.make_job(request, None, InputSettings(allow_image_uris=allowed))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    bad = VideoRequest(prompt="x", image=str(tmp_path / "bad.png"), num_frames=2)
    with pytest.raises(video_module.ImageRefused, match="not a readable image"):
        video_module.make_job(bad, None, InputSettings(allow_image_uris=allowed))


# ---------------------------------------------------------------- redaction


@pytest.mark.parametrize("uri, shown", [
    ("https://user:hunter2@host/x.png", "https://user:***@host/x.png"),
    ("https://AKIAXXX@host/x.png", "https://***@host/x.png"),
    ("https://b.s3.amazonaws.com/x.png?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc&v=1",
     "https://b.s3.amazonaws.com/x.png?X-Amz-Algorithm=AWS4&X-Amz-Credential=***&X-Amz-Signature=***&v=1"),
    ("https://acct.blob.core.windows.net/c/x.png?sv=1&sig=abc%3D", "https://acct.blob.core.windows.net/c/x.png?sv=1&sig=***"),
    ("https://storage.googleapis.com/b/x?Signature=abc&GoogleAccessId=me", "https://storage.googleapis.com/b/x?Signature=***&GoogleAccessId=me"),
    ("https://h/x?access_token=t&token=u", "https://h/x?access_token=***&token=***"),
    ("s3://bucket/key.png", "s3://bucket/key.png"),
    ("/local/path.png", "/local/path.png"),
])
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown
    assert redact_text(f"cannot open {uri}: boom") == f"cannot open {shown}: boom"


def test_secrets_never_reach_validation_errors(tmp_path):
    ref = "https://user:hunter2@cdn.example.com/x.png?X-Amz-Signature=s3cr3t"
    uri = write(tmp_path, f"prompts: [{{prompt: x, image: {json.dumps(ref)}}}]")
    (issue,) = open_input(uri).validate([])
    assert "hunter2" not in str(issue) and "s3cr3t" not in str(issue)
    assert "https://user:***@cdn.example.com/x.png?X-Amz-Signature=***" in issue.message


def test_secrets_never_reach_run_json(tmp_path, capsys):
    import fsspec

    mem = fsspec.filesystem("memory")
    name = "/creds/m.yaml"
    mem.pipe(name, b"prompts: [{id: v, prompt: x, num_frames: 1}]")
    secret_input = f"memory://{name}"  # a local-like URI; the secret rides in the output URI below
    out = tmp_path / "out"
    code = main(["render", secret_input, "--output", str(out), "--quiet", "--set", "executor=local",
                 "--set", "enhance.enabled=false", "--set", "interpolate.factor=1",
                 "--set", 'inputs.allow_image_uris=["https://u:pw@cdn.example.com/x?sig=topsecret"]'])
    assert code == 0
    run = (out / "run.json").read_text()
    assert "topsecret" not in json.loads(run)["overrides"][-1] and "sig=***" in run.split('"overrides"')[1]
    assert "pw@" not in json.loads(run)["overrides"][-1]


def test_values_that_are_not_yaml_are_errors_not_tracebacks(tmp_path, capsys):
    # Found by the fuzz test: yaml.safe_load raised through --set and --storage-option.
    uri = write(tmp_path, "prompts: [{prompt: x}]")
    assert main(["validate", uri, "--set", "t2v.chunk_frames=["]) == 2
    assert "--set 't2v.chunk_frames=[': the value is not valid YAML" in capsys.readouterr().err
    assert main(["validate", uri, "--storage-option", "secret=[hunter2"]) == 2
    err = capsys.readouterr().err
    assert "storage option 'secret': the value is not valid YAML" in err and "hunter2" not in err


def test_an_allowed_web_server_cannot_redirect_an_image_read(tmp_path):
    # A real HTTP server on 127.0.0.1 that answers every image with a redirect: neither validation nor the
    # worker follows it, so the redirect target is never requested.
    import http.server
    import threading

    requested = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            requested.append(self.path)
            self.send_response(302)
            self.send_header("Location", "/secret.png")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        prefix = f"http://127.0.0.1:{server.server_port}/img/"
        uri = write(tmp_path, f"prompts: [{{prompt: x, image: {prefix}a.png}}]")
        open_input(uri).validate([f"inputs.allow_image_uris=[{prefix}]"])
        request = VideoRequest(prompt="x", image=prefix + "a.png", num_frames=2)
        with pytest.raises(video_module.ImageRefused):
            video_module.make_job(request, None, InputSettings(allow_image_uris=[prefix]))
    finally:
        server.shutdown()
        server.server_close()
    assert requested and all(path == "/img/a.png" for path in requested), requested
