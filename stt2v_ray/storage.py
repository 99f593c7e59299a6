"""fsspec URIs: storage options from the environment, path joining, atomic writes.

Every input and output goes through a URI (a local path, s3://, or any fsspec
protocol). Outputs are written atomically: a reader never sees half a file, and a
failed write leaves no file at all.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import re
import tempfile
import urllib.parse
from collections.abc import Iterator
from typing import Any

import fsspec
import fsspec.core
import fsspec.utils
import yaml

_LOCAL_PROTOCOLS = ("file", "local")
_SECRET_WORDS = ("key", "secret", "token", "password", "session")


def protocol_of(uri: str) -> str:
    return fsspec.utils.get_protocol(uri)


def is_local(uri: str) -> bool:
    return protocol_of(uri) in _LOCAL_PROTOCOLS


def local_path(uri: str) -> str:
    """'file:///a/b' -> '/a/b'; a plain path is returned unchanged."""
    if not is_local(uri):
        raise ValueError(f"{uri!r} is not a local path")
    return uri.split("://", 1)[1] if "://" in uri else uri


def storage_options_for(uri: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """fsspec options for `uri`: `extra` as given, plus an S3 endpoint from the environment.

    Credentials are left to s3fs/botocore, which read AWS_ACCESS_KEY_ID etc. themselves;
    `key`/`secret` in `extra` pass through unchanged.
    """
    options = dict(extra or {})
    if protocol_of(uri) in ("s3", "s3a"):
        given = "endpoint_url" in options or "endpoint_url" in options.get("client_kwargs", {})
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and not given:
            options["endpoint_url"] = endpoint
    return options


def parse_storage_options(items: list[str]) -> dict[str, Any]:
    """['anon=true', 'client_kwargs.region_name=x'] -> {'anon': True, 'client_kwargs': {'region_name': 'x'}}."""
    options: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"storage option {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"storage option {key.strip()!r}: empty key segment")
        node = options
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"storage option {key.strip()!r}: {part!r} is already set to a value")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or error
            # The key only: the value may be a secret.
            raise ValueError(f"storage option {key.strip()!r}: the value is not valid YAML ({problem})") from None
    return options


class StorageOptionsError(ValueError):
    """The filesystem of a URI refused the --storage-option keys (a user error: exit 2, no traceback)."""


def filesystem(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path inside it) for a URI."""
    try:
        return fsspec.core.url_to_fs(uri, **(storage_options or {}))
    except TypeError as exc:
        raise _options_error(uri, storage_options, exc) from None


def check_storage_options(uri: str, storage_options: dict[str, Any] | None) -> None:
    """Fail early, before anything renders, when the URI's filesystem refuses the options.

    Some filesystems (s3fs) take any keyword at construction and pass it on only at the first
    request (to aiobotocore's session): one cheap `exists` makes that request now. Only the
    options' TypeError is turned into StorageOptionsError; other errors surface where they did."""
    fs, path = filesystem(uri, storage_options)
    try:
        fs.exists(path)
    except TypeError as exc:
        raise _options_error(uri, storage_options, exc) from None
    except Exception:  # noqa: S110 - unreachable, denied...: reported by the render's own first access, as before
        pass


def _options_error(uri: str, storage_options, exc: Exception) -> StorageOptionsError:
    # "unexpected keyword argument 'x'": name the keys only, their values may be secrets.
    keys = ", ".join(sorted(storage_options or {})) or "(none)"
    return StorageOptionsError(f"{redact_uri(uri)}: the filesystem does not accept these storage options ({keys}): {exc}")


def to_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Inverse of `filesystem`: a plain path for local files, protocol://path otherwise."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    if any(p in _LOCAL_PROTOCOLS for p in protocols):
        return path
    return fs.unstrip_protocol(path)


def join_uri(base: str, *parts: str) -> str:
    """Append relative path segments to a URI and normalise '..': join_uri('s3://b/d', '../x') -> 's3://b/x'."""
    for part in parts:
        if part.startswith("/") or "://" in part:
            raise ValueError(f"join_uri: {part!r} must be a relative path")
    prefix, path = (base.split("://", 1) if "://" in base else ("", base))
    joined = posixpath.normpath(posixpath.join(path, *parts)) if parts else path.rstrip("/") or path
    return f"{prefix}://{joined}" if prefix else joined


def resolve_uri(base_dir: str, ref: str) -> str:
    """A reference found in an input file: URIs and absolute paths stay, relative paths join `base_dir`."""
    if "://" in ref or ref.startswith("/"):
        return ref
    return join_uri(base_dir, ref)


def parent_uri(uri: str) -> str:
    prefix, path = (uri.split("://", 1) if "://" in uri else ("", uri))
    parent = posixpath.dirname(path.rstrip("/")) or "."
    return f"{prefix}://{parent}" if prefix else parent


@contextlib.contextmanager
def atomic_output(uri: str, storage_options: dict[str, Any] | None = None) -> Iterator[str]:
    """Yield a local temp path to write; on success it becomes `uri`, on error it vanishes.

    The temp file keeps the target's extension (ffmpeg picks the container from it).
    Local: the temp file sits beside the target and is renamed over it.
    Remote: it is uploaded with put_file (an S3 object appears only once complete).
    """
    ext = posixpath.splitext(uri)[1]
    if is_local(uri):
        target = os.path.abspath(local_path(uri))
        folder = os.path.dirname(target)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.tmp-", suffix=ext)
    else:
        fd, tmp = tempfile.mkstemp(prefix="stt2v-upload-", suffix=ext)
    os.close(fd)
    try:
        yield tmp
        if is_local(uri):
            # mkstemp creates 0600 files; give the output the usual umask-based mode.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, target)
        else:
            fs, path = filesystem(uri, storage_options)
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
            fs.put_file(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_bytes(uri: str, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    with atomic_output(uri, storage_options) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def redact(options: dict[str, Any]) -> dict[str, Any]:
    """Copy of storage options safe to log or write to run.json: secret-looking values become '***'."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if any(word in str(name).lower() for word in _SECRET_WORDS):
            out[name] = "***"
        elif isinstance(value, dict):
            out[name] = redact(value)
        else:
            out[name] = value
    return out


# ---------------------------------------------------------------- credentials in URIs

# Query parameters that carry a credential or a signature (S3/GCS/Azure presigned URLs, OAuth tokens).
_SECRET_QUERY = re.compile(r"(signature|credential|token|secret|password|passwd|^sig$|^key$|apikey|api_key|^auth)", re.I)
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_uri(uri: str) -> str:
    """A URI safe to print or record: a password in user:password@ and secret query values become '***'.

    redact_uri('https://u:pw@h/x?X-Amz-Signature=abc&v=1') -> 'https://u:***@h/x?X-Amz-Signature=***&v=1'
    """
    if "://" not in uri:
        return uri
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:  # e.g. an invalid IPv6 literal: keep only the scheme, the rest may hold anything
        return uri.split("://", 1)[0] + "://***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = parts.query
    if query:
        pairs = []
        for pair in query.split("&"):
            name, sep, value = pair.partition("=")
            secret = _SECRET_QUERY.search(urllib.parse.unquote_plus(name))
            pairs.append(f"{name}{sep}***" if secret and sep else pair)
        query = "&".join(pairs)
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URI inside a message (an error, a log line) passed through `redact_uri`."""
    def one(match: re.Match) -> str:
        uri = match.group(0)
        core = uri.rstrip(".,:;)]")  # punctuation that ends the sentence, not the URI
        return redact_uri(core) + uri[len(core):]

    return _URI_IN_TEXT.sub(one, text) if "://" in text else text


def read_capped(uri: str, storage_options: dict[str, Any] | None, max_bytes: int) -> bytes:
    """The bytes of a file, refusing one larger than max_bytes: checked before reading, and never read past the cap."""
    fs, path = filesystem(uri, storage_options)
    size = fs.size(path)
    if size is not None and size > max_bytes:
        raise ValueError(f"{redact_uri(uri)}: {size} bytes, more than the limit of {max_bytes}")
    with fs.open(path, "rb") as f:
        data = f.read(max_bytes + 1)  # a size the backend did not know, or a file that grew
    if len(data) > max_bytes:
        raise ValueError(f"{redact_uri(uri)}: more than the limit of {max_bytes} bytes")
    return data
