"""A local stand-in for the ECS agent's task scale-in protection endpoint.

Implements `PUT/GET /task-protection/v1/state` as documented: a PUT with
`ProtectionEnabled` (and `ExpiresInMinutes`, 1 to 2880, default 120) sets the
state; protection lapses at its expiry. `seconds_per_minute` shortens minutes
so tests can cross an expiry; `fail_with` makes it answer an HTTP error.
Runs as a thread in tests, or as a container (`python fake_agent.py PORT`).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TASK_ARN = "arn:aws:ecs:eu-west-1:123456789012:task/test/0123456789abcdef"


class Agent:
    def __init__(self, seconds_per_minute: float = 60.0):
        self.seconds_per_minute = seconds_per_minute
        self.enabled = False
        self.expires_at: float | None = None
        self.fail_with: int | None = None
        self.calls: list[tuple[str, dict]] = []
        self.history: list[tuple[float, bool]] = []
        self.lock = threading.Lock()

    def state(self) -> dict:
        with self.lock:
            if self.enabled and self.expires_at is not None and time.time() >= self.expires_at:
                self.enabled = False
                self.expires_at = None
                self.history.append((time.time(), False))
            body = {"ProtectionEnabled": self.enabled, "TaskArn": TASK_ARN}
            if self.enabled and self.expires_at:
                body["ExpirationDate"] = datetime.fromtimestamp(self.expires_at, UTC).isoformat()
            return {"protection": body}

    def protected(self) -> bool:
        return self.state()["protection"]["ProtectionEnabled"]

    def put(self, body: dict) -> tuple[int, dict]:
        if not isinstance(body.get("ProtectionEnabled"), bool):
            return 400, {"error": {"Code": "InvalidParameterException",
                                   "Message": "ProtectionEnabled is required"}}
        minutes = body.get("ExpiresInMinutes", 120)
        if not isinstance(minutes, int) or not 1 <= minutes <= 2880:
            return 400, {"error": {"Code": "InvalidParameterException",
                                   "Message": "ExpiresInMinutes must be from 1 to 2880"}}
        with self.lock:
            self.enabled = body["ProtectionEnabled"]
            self.expires_at = (time.time() + minutes * self.seconds_per_minute
                               if self.enabled else None)
            self.history.append((time.time(), self.enabled))
        return 200, self.state()


def make_handler(agent: Agent):
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            agent.calls.append((method, body))
            if self.path == "/calls":
                return self._reply(200, {"calls": agent.calls, "protected": agent.protected(),
                                         "history": agent.history})
            if self.path == "/fail":
                agent.fail_with = body.get("status")
                return self._reply(200, {})
            if self.path != "/task-protection/v1/state":
                return self._reply(404, {"error": {"Code": "NotFound"}})
            if agent.fail_with:
                return self._reply(agent.fail_with, {"error": {"Code": "ServerException",
                                                               "Message": "injected"}})
            if method == "GET":
                return self._reply(200, agent.state())
            code, reply = agent.put(body)
            return self._reply(code, reply)

        def do_GET(self):
            self._route("GET")

        def do_PUT(self):
            self._route("PUT")

        def do_POST(self):
            self._route("POST")

        def log_message(self, *args):
            pass

    return Handler


def serve(host: str, port: int, agent: Agent) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(agent))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    # In its own container the agent must answer on the Docker network.
    srv = ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), make_handler(Agent(seconds)))
    srv.serve_forever()
