"""Paths that are URLs: `s3://`, `gs://` or any fsspec protocol, opened through fsspec.

SOURCE, OUT, `--labels`, `--config` and `--data-dir` may be URLs. Credentials and endpoints come
only from the environment the storage library reads (`AWS_ENDPOINT_URL`, `AWS_PROFILE`, the
application-default credentials of Google Cloud, ...), never from augexport flags. Every way a URL
can be unusable before work starts (no fsspec, the scheme's package missing, an unknown scheme,
no credentials, an endpoint that cannot be reached, a missing bucket) is a UsageError naming the
URL and what to install or set. fsspec is imported only when a URL is used.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .errors import UsageError
from .quiet import quiet_libraries

_URL_RE = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.I)
# the packages fsspec needs per protocol, as pip names (augexport[remote] has the first two)
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "abfs": "adlfs", "az": "adlfs",
             "hdfs": "pyarrow", "http": "aiohttp", "https": "aiohttp"}
REMOTE_EXTRA = "pip install 'augexport[remote]'"


READ_ONLY_SCHEMES = ("http", "https")  # fsspec's HTTP file system reads only


def require_location(url: str, what: str) -> None:
    """`s3://` alone (or `gs:///`) names no bucket: refuse it before a trailing-slash strip turns
    it into the local path `s3:`."""
    m = _URL_RE.match(url)
    if m and not url[m.end():].strip("/"):
        raise UsageError(f"{what}: the URL names no bucket or host; accepted: {m.group(1)}://BUCKET[/PREFIX]")


def scheme(location: object) -> str | None:
    """`s3` for `s3://b/k`; None for a local path."""
    m = _URL_RE.match(str(location))
    return m.group(1).lower() if m else None


def is_url(location: object) -> bool:
    """A location read or written through fsspec (`file://` URLs are local paths)."""
    return scheme(location) not in (None, "file")


def local_path(location: str) -> str:
    """A local path as given, or the path of a `file://` URL."""
    return location[len("file://"):] if scheme(location) == "file" else location


def join(url: str, *names: str) -> str:
    return "/".join([url.rstrip("/"), *names])


_CHATTY_LOGGERS = ("gcsfs", "google.auth", "google_auth_oauthlib", "s3fs", "aiobotocore", "botocore")


def open_fs(url: str, what: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for `url`; UsageError naming `what` (e.g. `OUT s3://b/x`)
    and the package to install when fsspec or the scheme's implementation is missing. Listing
    caches are off: other processes (workers, another run) change what is there."""
    try:
        import fsspec
    except ImportError:
        raise UsageError(f"{what}: URLs need fsspec, which is not installed: {REMOTE_EXTRA}") from None
    proto = scheme(url) or ""
    if quiet_libraries():  # gcsfs logs every retry's traceback; the failure is augexport's one message
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        fs, path = fsspec.url_to_fs(url, use_listings_cache=False)
    except ImportError as exc:
        package = _PACKAGES.get(proto, f"the fsspec implementation of {proto}://")
        raise UsageError(f"{what}: {proto}:// needs {package}, which is not installed: "
                         f"{REMOTE_EXTRA if package in ('s3fs', 'gcsfs') else 'pip install ' + package} "
                         f"({_first_line(exc)})") from None
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise UsageError(f"{what}: {proto}:// is not a protocol fsspec knows ({_first_line(exc)}); accepted: a local "
                         "path, s3://, gs:// or another fsspec URL") from None
    return fs, path.rstrip("/")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def explain(exc: BaseException) -> str:
    """What a storage error means for the user: credentials, endpoint, bucket, permission."""
    name = type(exc).__name__
    # a library's subclasses count as their base (aiohttp's ClientConnectorDNSError is a
    # ClientConnectorError); a builtin only by its own name (BrokenPipeError is no unreachable endpoint)
    kinds = {name} | {c.__name__ for c in type(exc).__mro__ if c.__module__ != "builtins"}
    if kinds & {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError", "RefreshError"}:
        return (f"no credentials ({_first_line(exc)}): set them in the environment (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; for gs:// the application-default credentials, "
                "`gcloud auth application-default login` or GOOGLE_APPLICATION_CREDENTIALS)")
    if kinds & {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ConnectionError",
                "ServerDisconnectedError", "ConnectionRefusedError", "ReadTimeoutError", "TimeoutError"}:
        return (f"cannot reach the storage endpoint ({_first_line(exc)}); check AWS_ENDPOINT_URL (or the "
                "endpoint your storage library reads) and the network")
    if isinstance(exc, PermissionError):
        return f"access denied ({_first_line(exc)}): check the credentials' permissions"
    if isinstance(exc, FileNotFoundError):
        return f"not found ({_first_line(exc)})"
    return f"{name}: {_first_line(exc)}"


def is_transport_error(exc: BaseException) -> bool:
    """Not about one object (missing, denied) but about reaching the store at all."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return False
    name = type(exc).__name__
    return any(word in name for word in ("Connect", "Credentials", "Timeout", "Disconnected"))


def cat_range(fs: Any, path: str, start: int, end: int) -> bytes:
    """Bytes [start, end) of an object, fewer where it is shorter. An empty object is b"" (S3
    answers any ranged GET of one with 416, which s3fs raises as EINVAL)."""
    try:
        return fs.cat_file(path, start=start, end=end)
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)) or "range" not in str(exc).lower():
            raise
        if fs.info(path).get("size") == 0:
            return b""
        raise


def read_bytes(location: str, what: str, limit: int = 64 << 20) -> bytes:
    """A whole small file (`--config`, `--labels`) from a local path or a URL. A missing or
    unreadable local file raises OSError (the caller words it); any URL problem is a UsageError."""
    if not is_url(location):
        with open(local_path(location), "rb") as f:
            data = f.read(limit + 1)
    else:
        fs, path = open_fs(location, what)
        try:
            data = cat_range(fs, path, 0, limit + 1)
        except Exception as exc:  # every storage failure is the user's path or environment
            raise UsageError(f"{what}: cannot read: {explain(exc)}") from None
    if len(data) > limit:
        raise UsageError(f"{what}: larger than {limit} bytes")
    return data
