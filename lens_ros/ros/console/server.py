"""``lens-console``: a small local web page to operate lens_node from a browser or a tablet.

Serves (stdlib ``http.server``, no build step, no CDN; the page is ``static/`` of this package):
  ``/``                      the page
  ``/frame.jpg?src=image``   newest camera frame as JPEG (``src=debug``: newest overlay; 204
                             while there is none)
  ``/events``                Server-Sent Events: state, feedback, goal, result, overlay,
                             diagnostics
  ``/api/goal`` (POST)       ``{"command": ..., "reasoning": 0|1|2}`` -> ``{"goal": id}``
  ``/api/cancel`` (POST)     ``{"goal": id}``
  ``/api/audio`` (POST)      raw mono int16 little-endian PCM, ``?rate=16000``: published on
                             ``audio`` (AudioChunk) for speech_node
  ``/api/state``             JSON snapshot (results, diagnostics)

Security: it binds to 127.0.0.1 unless ``--host`` says otherwise; serving any other address
needs a token (``--token``, or one is generated and printed). With a token, every request
without it (``?token=``, header ``X-Lens-Token`` or the cookie the page gets) is refused (403).
Without a token, requests naming another Host than localhost are refused (DNS rebinding).
"""
from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import queue
import secrets
import signal
import sys
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

STATIC = Path(__file__).resolve().parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
MAX_AUDIO_S = 30  #: longest push-to-talk recording accepted, seconds
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConsoleServer(ThreadingHTTPServer):
    """The HTTP server with the bridge, event hub and token the handlers use."""

    daemon_threads = True

    def __init__(self, address, bridge, hub, token: str | None) -> None:
        super().__init__(address, ConsoleHandler)
        self.bridge, self.hub, self.token = bridge, hub, token
        self.stopping = threading.Event()


class ConsoleHandler(BaseHTTPRequestHandler):
    server: ConsoleServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args) -> None:  # quiet: one line per refused request only
        pass

    # -- access -------------------------------------------------------------------------------
    def _allowed(self, query: dict) -> bool:
        token = self.server.token
        if token is None:  # loopback only: refuse foreign Host names (DNS rebinding)
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            return host in LOCAL_HOSTS
        given = (query.get("token", [""])[0] or self.headers.get("X-Lens-Token") or "")
        if not given:
            cookie = SimpleCookie(self.headers.get("Cookie") or "")
            given = cookie["lens_token"].value if "lens_token" in cookie else ""
        return hmac.compare_digest(given.encode(), token.encode())

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._allowed(query):
            sys.stderr.write(f"lens-console: refused {method} {url.path} from "
                             f"{self.client_address[0]} (no valid token)\n")
            return self._send(HTTPStatus.FORBIDDEN, b"forbidden: a valid token is required\n",
                              "text/plain")
        route = ROUTES.get((method, url.path))
        if route is None and method == "GET" and url.path.startswith("/static/"):
            route = ConsoleHandler._static
        if route is None:
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        try:
            route(self, query)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except (ValueError, KeyError, json.JSONDecodeError) as err:
            self._json({"error": str(err)}, HTTPStatus.BAD_REQUEST)
        except RuntimeError as err:
            self._json({"error": str(err)}, HTTPStatus.SERVICE_UNAVAILABLE)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    # -- replies ------------------------------------------------------------------------------
    def _send(self, code: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data, code: int = HTTPStatus.OK) -> None:
        self._send(code, json.dumps(data).encode(), "application/json")

    def _body(self, limit: int) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if n > limit:
            raise ValueError(f"request body of {n} bytes is over the limit of {limit}")
        return self.rfile.read(n)

    # -- routes -------------------------------------------------------------------------------
    def _index(self, query) -> None:
        headers = {}
        if self.server.token:  # later requests (images, events) carry the cookie
            headers["Set-Cookie"] = (f"lens_token={self.server.token}; Path=/; HttpOnly; "
                                     "SameSite=Strict")
        self._send(HTTPStatus.OK, (STATIC / "index.html").read_bytes(), TYPES[".html"], headers)

    def _static(self, query) -> None:
        name = urlsplit(self.path).path[len("/static/"):]
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in files:
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        path = files[name]
        self._send(HTTPStatus.OK, path.read_bytes(), TYPES.get(path.suffix, "text/plain"))

    def _frame(self, query) -> None:
        src = query.get("src", ["image"])[0]
        if src not in self.server.bridge.frames:
            raise ValueError(f"src must be one of {sorted(self.server.bridge.frames)}")
        jpeg = self.server.bridge.frames[src].jpeg()
        if jpeg is None:
            return self._send(HTTPStatus.NO_CONTENT, b"", "image/jpeg")
        self._send(HTTPStatus.OK, jpeg, "image/jpeg")

    def _state(self, query) -> None:
        self._json(self.server.bridge.state())

    def _events(self, query) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        hub = self.server.hub
        q = hub.listen()
        try:
            self._event("state", self.server.bridge.state())
            while not self.server.stopping.is_set():
                try:
                    name, data = q.get(timeout=10.0)
                except queue.Empty:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    continue
                self._event(name, data)
        finally:
            hub.forget(q)
            self.close_connection = True

    def _event(self, name: str, data) -> None:
        self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _goal(self, query) -> None:
        req = json.loads(self._body(65536) or b"{}")
        command = str(req.get("command", "")).strip()
        if not command:
            raise ValueError("empty command")
        reasoning = int(req.get("reasoning", 0))
        if reasoning not in (0, 1, 2):
            raise ValueError("reasoning must be 0 (node default), 1 (off) or 2 (on)")
        self._json({"goal": self.server.bridge.send_goal(command, reasoning)})

    def _cancel(self, query) -> None:
        req = json.loads(self._body(4096) or b"{}")
        self._json({"canceling": self.server.bridge.cancel(str(req.get("goal", "")))})

    def _audio(self, query) -> None:
        rate = int(query.get("rate", ["16000"])[0])
        body = self._body(MAX_AUDIO_S * rate * 2)
        if len(body) % 2:
            raise ValueError("audio must be int16 samples (an even number of bytes)")
        pcm = np.frombuffer(body, dtype="<i2").astype(np.int16)
        n = self.server.bridge.publish_audio(pcm, rate)
        self._json({"chunks": n, "seconds": round(len(pcm) / rate, 2)})


ROUTES = {("GET", "/"): ConsoleHandler._index, ("GET", "/index.html"): ConsoleHandler._index,
          ("GET", "/frame.jpg"): ConsoleHandler._frame, ("GET", "/events"): ConsoleHandler._events,
          ("GET", "/api/state"): ConsoleHandler._state, ("POST", "/api/goal"): ConsoleHandler._goal,
          ("POST", "/api/cancel"): ConsoleHandler._cancel,
          ("POST", "/api/audio"): ConsoleHandler._audio}


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lens-console", description=__doc__.split("\n\n")[0].replace("``", ""),
        epilog="ROS arguments go after --ros-args, e.g. "
        "--ros-args -r __ns:=/arm")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; "
                   "any other address requires a token)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any)")
    p.add_argument("--token", default="", help="access token (generated when serving beyond "
                   "localhost and none is given)")
    return p


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    from lens_ros.ros.console.bridge import ConsoleBridge, EventHub

    argv = sys.argv if argv is None else ["lens-console", *argv]
    args = make_parser().parse_args(remove_ros_args(argv)[1:])
    token = args.token or (None if is_loopback(args.host) else secrets.token_urlsafe(18))
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    hub = EventHub()
    bridge = ConsoleBridge(hub)
    try:
        server = ConsoleServer((args.host, args.port), bridge, hub, token)
    except OSError as err:
        print(f"lens-console: cannot listen on {args.host}:{args.port} ({err.strerror}); "
              "choose another --port", file=sys.stderr)
        bridge.close()
        rclpy.try_shutdown()
        return 2

    def stop(*_):
        server.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    host, port = server.server_address[:2]
    shown = "127.0.0.1" if is_loopback(args.host) else (
        args.host if args.host not in ("0.0.0.0", "::") else "<this-machine>")
    print(f"lens-console: open http://{shown}:{port}/" + (f"?token={token}" if token else ""),
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        bridge.close()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
