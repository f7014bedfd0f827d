"""An HTTP proxy on 127.0.0.1 in front of moto that injects AWS errors.

`fail_next(n, code)` answers the next n requests with an AWS-shaped JSON
error (`ThrottlingException`, `AccessDeniedException`, ...); `deny(text)`
answers every request whose body contains text with AccessDeniedException;
`deny_path(text)` and `break_path(text, n)` answer requests by path with S3's
403 AccessDenied, or 5xx for the next n of them.
Everything else is forwarded to the upstream server unchanged.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class AwsProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.failures: list[str] = []
        self.denied: list[str] = []
        self.denied_paths: list[str] = []
        self.broken_paths: list[tuple[str, int]] = []
        self.requests: list[tuple[str, bytes]] = []
        self.paths: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail_next(self, count: int, code: str = "ThrottlingException") -> None:
        with self.lock:
            self.failures.extend([code] * count)

    def deny(self, text: str) -> None:
        self.denied.append(text)

    def deny_path(self, text: str) -> None:
        """Answer S3-style 403 AccessDenied to every request whose path contains text."""
        self.denied_paths.append(text)

    def break_path(self, text: str, count: int, status: int = 503) -> None:
        """Answer the next count requests whose path contains text with an S3-style
        5xx (SlowDown for 503, InternalError otherwise)."""
        with self.lock:
            self.broken_paths.extend([(text, status)] * count)

    def close(self) -> None:
        self.server.shutdown()

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _error(self, code: str) -> None:
                body = json.dumps({"__type": code, "message": f"injected {code}"}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-ErrorType", code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _s3_error(self, status: int, code: bytes) -> None:
                body = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>" + code +
                        b"</Code><Message>injected</Message></Error>")
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = self.headers.get("X-Amz-Target", "")
                proxy.requests.append((target, body))
                proxy.paths.append((self.command, self.path))
                with proxy.lock:
                    code = proxy.failures.pop(0) if proxy.failures else None
                if code is None and any(t.encode() in body for t in proxy.denied):
                    code = "AccessDeniedException"
                if code:
                    return self._error(code)
                with proxy.lock:
                    broken = next((b for b in proxy.broken_paths if b[0] in self.path), None)
                    if broken:
                        proxy.broken_paths.remove(broken)
                if broken:
                    name = b"SlowDown" if broken[1] == 503 else b"InternalError"
                    return self._s3_error(broken[1], name)
                if any(t in self.path for t in proxy.denied_paths):
                    return self._s3_error(403, b"AccessDenied")
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(proxy.upstream + self.path, data=body or None,
                                                 method=self.command, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, reply, reply_headers = (response.status, response.read(),
                                                        response.headers)
                except urllib.error.HTTPError as exc:
                    status, reply, reply_headers = exc.code, exc.read(), exc.headers
                self.send_response(status)
                for key, value in reply_headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding",
                                           "connection", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, *args):
                pass

        return Handler
