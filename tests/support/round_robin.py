"""A round-robin HTTP proxy on 127.0.0.1 for the tests of several webservers: each request
goes to the next backend, as a load balancer without stickiness sends them.

Written here rather than run as nginx: a hundred lines of the standard library, started
in the test's process, and it records which backend answered each request, which the
tests check. Requests and answers pass unchanged (Host header, cookies, redirects are
not followed), one connection per request.
"""

from __future__ import annotations

import http.client
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.servers import free_port

# Not forwarded: they belong to one connection (RFC 9110, 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade"}


class RoundRobinProxy:
    def __init__(self, backends: list[tuple[str, int]]):
        self.backends = backends
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.served: list[int] = []  # the backend's index, for each request
        self.answers: list[tuple[int, str, str, int]] = []  # (backend, method, path, status)
        self._next = itertools.cycle(range(len(backends)))
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="round-robin-proxy")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                with proxy._lock:
                    index = next(proxy._next)
                    proxy.served.append(index)
                host, port = proxy.backends[index]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in HOP_BY_HOP}
                connection = http.client.HTTPConnection(host, port, timeout=60)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                    proxy.answers.append((index, self.command, self.path, answer.status))
                    self.send_response_only(answer.status, answer.reason)
                    for key, value in answer.getheaders():
                        if key.lower() not in HOP_BY_HOP | {"content-length"}:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError as exc:
                    self.send_error(502, f"backend {host}:{port}: {exc}")
                finally:
                    connection.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass  # the backends' own logs say what was asked

        return Handler

    def start(self) -> RoundRobinProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
