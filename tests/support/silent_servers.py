"""Servers on 127.0.0.1 that accept connections and then stop answering.

They stand for a dependency that is half there, as during an RDS failover or
behind a security group that lets the handshake through: the TCP connection
opens, and then nothing. Each runs in daemon threads of the test process, so
a CLI started as a subprocess reaches it over TCP like any real server.

- `blackhole()`: accepts, reads forever, never writes a byte.
- `silent_postgres()`: completes PostgreSQL's start-up handshake (SSLRequest
  answered 'N', then AuthenticationOk, ParameterStatus, BackendKeyData,
  ReadyForQuery) and then reads every query forever without answering.
- `silent_resolver()`: a DNS server that never answers, for one command.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


@dataclass
class SilentServer:
    port: int
    _listener: socket.socket
    _connections: list[socket.socket] = field(default_factory=list)
    queries: list[bytes] = field(default_factory=list)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


def _read_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _drain(conn: socket.socket) -> None:
    while conn.recv(65536):
        pass


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def _postgres_session(server: SilentServer, conn: socket.socket) -> None:
    while True:
        (length,) = struct.unpack("!I", _read_exact(conn, 4))
        body = _read_exact(conn, length - 4)
        (code,) = struct.unpack("!I", body[:4])
        if code in (SSL_REQUEST, GSSENC_REQUEST):
            conn.sendall(b"N")  # no TLS, no GSS encryption: go on in clear text
            continue
        if code == CANCEL_REQUEST:
            return
        break  # the StartupMessage
    reply = _message(b"R", struct.pack("!I", 0))  # AuthenticationOk
    for name, value in (("server_version", "16.4"), ("client_encoding", "UTF8"),
                        ("server_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
                        ("integer_datetimes", "on"), ("standard_conforming_strings", "on"),
                        ("TimeZone", "UTC")):
        reply += _message(b"S", name.encode() + b"\0" + value.encode() + b"\0")
    reply += _message(b"K", struct.pack("!II", 4242, 2424))  # BackendKeyData
    reply += _message(b"Z", b"I")  # ReadyForQuery, idle
    conn.sendall(reply)
    while True:  # every query from now on is read and never answered
        chunk = conn.recv(65536)
        if not chunk:
            return
        server.queries.append(chunk)


def _serve(server: SilentServer, session) -> None:
    while True:
        try:
            conn, _ = server._listener.accept()
        except OSError:
            return
        server._connections.append(conn)

        def run(conn=conn) -> None:
            with contextlib.suppress(OSError, ConnectionError, struct.error):
                session(server, conn)

        threading.Thread(target=run, daemon=True).start()


def _start(session) -> SilentServer:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    server = SilentServer(port=listener.getsockname()[1], _listener=listener)
    threading.Thread(target=_serve, args=(server, session), daemon=True).start()
    return server


def blackhole() -> SilentServer:
    return _start(lambda _server, conn: _drain(conn))


def silent_postgres() -> SilentServer:
    return _start(_postgres_session)


@contextlib.contextmanager
def silent_resolver(directory: Path) -> Iterator[Callable[[list[str]], list[str]]]:
    """A DNS server on 127.0.0.53:53 that takes every query and never answers.

    Yields a function that wraps a command so that it runs with that server as its
    only resolver: in a mount namespace of its own (unshare(1)), with a resolv.conf
    naming it bind-mounted over /etc/resolv.conf; the rest of the machine keeps its
    own. Binding port 53 and the namespace take root, which `make test` runs as.
    """
    if os.geteuid() != 0:
        raise RuntimeError("a silent DNS server needs root (port 53 and a mount namespace); "
                           "run the tests as root, as `make test` does on Debian")
    address = "127.0.0.53"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind((address, 53))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((address, 53))  # a resolver retrying over TCP gets a silent listener too
        tcp.listen(16)
        resolv = directory / "resolv.conf"
        resolv.write_text(f"nameserver {address}\n")

        def wrap(command: list[str]) -> list[str]:
            return ["unshare", "--mount", "sh", "-c",
                    'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv), *command]

        yield wrap
