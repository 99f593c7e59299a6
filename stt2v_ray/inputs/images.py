"""Which image URIs an input may name: checked at validation, and again where the image is opened.

Allowed: a path inside the input's folder (a manifest's folder, a dataset's prefix), on the
input's own protocol, and anything under a prefix the user allows (`--allow-image-uri`,
`inputs.allow_image_uris`). Refused: `..` that climbs out, absolute paths elsewhere,
`file://`, `http(s)://` and every other protocol. Link-local and cloud metadata addresses
are refused always, even under an allowed prefix, after resolving the host name (no
connection is made). A refused URI is never opened, listed or probed.
"""
from __future__ import annotations

import ipaddress
import os
import posixpath
import socket
import urllib.parse
from dataclasses import dataclass

from stt2v_ray.storage import is_local, protocol_of, redact_uri

METADATA_HOSTS = ("metadata.google.internal", "metadata.goog", "metadata.azure.com")
_ALWAYS_REFUSED_NETS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16",      # IPv4 link-local: AWS/GCP/Azure/OpenStack instance metadata
    "fe80::/10",           # IPv6 link-local
    "fd00:ec2::254/128",   # AWS IMDS over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
))
# Protocols whose "host" is a bucket or account name, not a network host to resolve.
_BUCKET_PROTOCOLS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory", "hf")


def refused_address(host: str) -> str:
    """'' unless `host` (a name or a literal IP) is a metadata name or a link-local/metadata address."""
    name = host.strip("[]").rstrip(".").lower()
    if name in METADATA_HOSTS:
        return f"metadata host {name}"
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _ALWAYS_REFUSED_NETS):
        return f"link-local/metadata address {ip}"
    return ""


def resolved_refusal(host: str, port: int | None) -> str:
    """'' unless the host name resolves to a refused address (DNS only: nothing is connected to)."""
    try:
        infos = socket.getaddrinfo(host, port or 0, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError) as error:
        return f"cannot resolve host {host!r}: {error}"
    for info in infos:
        problem = refused_address(str(info[4][0]))
        if problem:
            return f"host {host!r} resolves to a {problem}"
    return ""


def _host_of(uri: str) -> tuple[str, int | None] | None:
    """(host, port) of a URI whose authority is a network host; None for local paths and bucket protocols."""
    if "://" not in uri or protocol_of(uri) in _BUCKET_PROTOCOLS or is_local(uri):
        return None
    parts = urllib.parse.urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "", port)


def _normal(uri: str) -> tuple[str, str, str]:
    """(scheme, host[:port], normalised path) for prefix comparison; '%2e%2e' counts as '..'."""
    if "://" not in uri or is_local(uri):
        path = uri.split("://", 1)[1] if "://" in uri else uri
        return ("", "", posixpath.normpath(os.path.abspath(path)) if path else "")
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in _BUCKET_PROTOCOLS:
        host = parts.netloc.rsplit("@", 1)[-1]  # bucket names are case-sensitive on some stores
    else:
        host = (parts.hostname or "") + (f":{parts.port}" if _port_or_none(parts) else "")
    path = urllib.parse.unquote(parts.path)
    return (scheme, host, posixpath.normpath("/" + path) if path.strip("/") else "/")


def _port_or_none(parts: urllib.parse.SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def _under(uri: str, prefix: str) -> bool:
    """Is `uri` the prefix itself or below it, at a path boundary (/a/b allows /a/b/c, not /a/bc)?"""
    (s1, h1, p1), (s2, h2, p2) = _normal(uri), _normal(prefix)
    if (s1, h1) != (s2, h2) or not p1 or not p2:
        return False
    return p1 == p2 or p1.startswith(p2.rstrip("/") + "/")


def _real(path: str) -> str:
    """A local path with symlinks resolved: an image linked from inside the folder to outside is outside."""
    return os.path.realpath(path)


@dataclass(frozen=True)
class ImagePolicy:
    """roots: the input's own folder(s); allowed: the user's extra prefixes."""

    roots: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()

    def refusal(self, uri: str, ref: str | None = None, resolve: bool = True) -> str:
        """'' when `uri` may be opened, else why not. `ref`: the text as written in the input (for the message)."""
        ref = uri if ref is None else ref
        try:
            return self._refusal(uri, ref, resolve)
        except ValueError as error:  # urllib refuses e.g. 'http://[::1' before any policy applies
            return f"{redact_uri(ref)}: not a valid URI ({error})"

    def _refusal(self, uri: str, ref: str, resolve: bool) -> str:
        shown = redact_uri(ref)
        host = _host_of(uri)
        if host is not None:
            literal = refused_address(host[0])
            if literal:
                return f"{shown}: {literal}: image URIs never reach these, whatever is allowed"
        prefixes = self.roots + self.allowed
        inside = any(_under(uri, p) for p in prefixes)
        if inside and is_local(uri) and "://" not in uri:
            # Lexically inside; a symlink may still point out of the folder.
            real = _real(uri)
            inside = any(_under(real, _real(p)) for p in prefixes if is_local(p) and "://" not in p) or any(
                _under(uri, p) for p in self.allowed)
        if not inside:
            return (f"{shown}: {self._why_outside(uri, ref)}; "
                    "allow it with --allow-image-uri PREFIX or --set inputs.allow_image_uris=[PREFIX]")
        if host is not None and resolve:
            problem = resolved_refusal(*host)
            if problem:
                return f"{shown}: {problem}: image URIs never reach these, whatever is allowed"
        return ""

    def _why_outside(self, uri: str, ref: str) -> str:
        root = redact_uri(self.roots[0]) if self.roots else "the input's folder"
        if ref.lower().startswith("file:"):
            return "file:// URIs are not allowed"
        path = urllib.parse.urlsplit(ref).path if "://" in ref else ref
        if ".." in urllib.parse.unquote(path).replace("\\", "/").split("/"):
            return f"'..' climbs out of the input's folder {root}"
        if "://" in ref:
            protocol = protocol_of(ref)
            if any("://" in p and protocol_of(p) == protocol for p in self.roots + self.allowed):
                return "outside the input's prefix and every allowed prefix"
            return f"protocol {protocol}:// is not allowed (only paths inside {root})"
        if ref.startswith(("/", "\\")) or (len(ref) > 1 and ref[1] == ":"):
            return f"an absolute path outside the input's folder {root}"
        return f"outside the input's folder {root} (a symbolic link?)"


def image_storage_options(uri: str, options: dict | None) -> dict:
    """fsspec options to read an image with. HTTP(S): redirects are not followed (an allowed host could
    otherwise send the request on to a metadata address), and the input's options (S3 endpoints, keys)
    are not sent to a web server."""
    if protocol_of(uri) in ("http", "https"):
        return {"allow_redirects": False}
    return dict(options or {})


def policy_for(roots: list[str] | tuple[str, ...], allowed: list[str] | tuple[str, ...]) -> ImagePolicy:
    return ImagePolicy(tuple(roots), tuple(allowed))


def with_input_roots(settings, roots: list[str]):
    """Settings for the executor: the input's folders added to the allowed prefixes, so the workers,
    which never see the input, apply the same policy where they open images."""
    allowed = list(settings.inputs.allow_image_uris) + [r for r in roots if r not in settings.inputs.allow_image_uris]
    return settings.model_copy(update={"inputs": settings.inputs.model_copy(update={"allow_image_uris": allowed})})
