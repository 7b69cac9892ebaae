"""A network guard for tests: any connection or name lookup that is not loopback is recorded (one
line in a log file) and refused. `install(log)` patches this process; `sitecustomize_dir(tmp, log)`
makes a folder that, first on PYTHONPATH, installs it in every Python subprocess too.
(gRPC's C core opens its own sockets, outside Python's socket module; Beam uses it on loopback.)"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

ENV = "AUGEXPORT_NETGUARD_LOG"
_ORIGINAL: dict[str, Any] = {}


def _loopback(host: Any) -> bool:
    if host is None or host in ("", "localhost", "localhost.localdomain"):
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(log: str, what: str) -> OSError:
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {what}\n")
    return OSError(errno.ENETUNREACH, f"network guard: {what} is not loopback")


def install(log: str) -> None:
    if _ORIGINAL:
        return
    _ORIGINAL.update(connect=socket.socket.connect, connect_ex=socket.socket.connect_ex,
                     getaddrinfo=socket.getaddrinfo, create_connection=socket.create_connection)

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise _refuse(log, f"connect {address!r}")

    def connect(sock: socket.socket, address: Any) -> Any:
        check(sock, address)
        return _ORIGINAL["connect"](sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> Any:
        check(sock, address)
        return _ORIGINAL["connect_ex"](sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host):
            raise _refuse(log, f"getaddrinfo {host!r}")
        return _ORIGINAL["getaddrinfo"](host, *args, **kwargs)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(address[0]):
            raise _refuse(log, f"create_connection {address!r}")
        return _ORIGINAL["create_connection"](address, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.create_connection = create_connection  # type: ignore[assignment]


def uninstall() -> None:
    if not _ORIGINAL:
        return
    socket.socket.connect = _ORIGINAL["connect"]  # type: ignore[method-assign]
    socket.socket.connect_ex = _ORIGINAL["connect_ex"]  # type: ignore[method-assign]
    socket.getaddrinfo = _ORIGINAL["getaddrinfo"]  # type: ignore[assignment]
    socket.create_connection = _ORIGINAL["create_connection"]  # type: ignore[assignment]
    _ORIGINAL.clear()


def sitecustomize_dir(folder: Path, root: Path) -> Path:
    """A folder with a sitecustomize.py that installs the guard when $AUGEXPORT_NETGUARD_LOG is set."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import os, sys\n"
        f"if os.environ.get({ENV!r}):\n"
        f"    sys.path.insert(0, {str(root)!r})\n"
        "    from tests.netguard import install\n"
        f"    install(os.environ[{ENV!r}])\n")
    return folder
