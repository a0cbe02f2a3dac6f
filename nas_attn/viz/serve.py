"""``nas-attn dashboard RUN --serve``: the dashboard over HTTP, rebuilt from the storage.

A ``ThreadingHTTPServer`` (standard library) answers ``/`` with the whole page and
``/payload.json`` with its data; both are rebuilt from the Optuna storage when asked, at most
once per ``min_interval_s`` (several tabs polling do not hammer the database). The page polls
``payload.json`` every ``refresh_s`` seconds and redraws in place, so it follows a running
search. It binds to 127.0.0.1 unless told otherwise: the page shows architectures, storage
URLs (redacted) and versions, and the server has no authentication.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
DEFAULT_REFRESH_S = 10.0


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_options(host: str, port: int, refresh_s: float) -> None:
    if not host:
        raise ConfigError("--host", host, "expected an address to bind to, e.g. 127.0.0.1")
    if not 0 <= port <= 65535:
        raise ConfigError("--port", port, "expected 0-65535 (0 picks a free port)")
    if refresh_s < 0:
        raise ConfigError("--refresh", refresh_s, "expected seconds >= 0 (0: no polling)")


class PageSource:
    """Builds ``(page html, payload json)`` from a run folder, cached ``min_interval_s``."""

    def __init__(self, run_dir: str | Path, refresh_s: float = DEFAULT_REFRESH_S,
                 min_interval_s: float = 1.0,
                 loader: Callable[[], tuple[Any, dict[str, Any], str | None]] | None = None
                 ) -> None:
        from nas_attn.viz.dashboard import load_run_inputs

        self.run_dir = Path(run_dir)
        self.refresh_s = refresh_s
        self.min_interval_s = min_interval_s
        self._loader = loader or (lambda: load_run_inputs(self.run_dir))
        self._lock = threading.Lock()
        self._study: Any = None
        self._yaml: str | None = None
        self._built_at = -1e18
        self._page = b""
        self._payload = b""

    def _rebuild(self) -> None:
        from nas_attn.search.results import run_limits
        from nas_attn.search.run_dir import read_run
        from nas_attn.viz.dashboard import build, payload, ray_curves, render_html

        if self._study is None:  # the study object is kept: Optuna re-reads running trials
            self._study, info, self._yaml = self._loader()
        else:
            try:
                info = read_run(self.run_dir)  # status and end time change during a run
            except ConfigError:
                info = {}
        d = build(self._study, info, self._yaml, curves=ray_curves(self.run_dir),
                  limits=run_limits(self.run_dir, info))
        pay = payload(d)
        self._payload = json.dumps(pay, separators=(",", ":")).encode()
        self._page = render_html(d, self.refresh_s, pay).encode()

    def get(self, what: str) -> bytes:
        with self._lock:
            now = time.monotonic()
            if now - self._built_at >= self.min_interval_s:
                try:
                    self._rebuild()
                except Exception:  # e.g. a locked database: serve the last page if any
                    if not self._page:
                        raise
                self._built_at = now
            return self._page if what == "page" else self._payload


def make_server(source: PageSource, host: str = DEFAULT_HOST,
                port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """A server for ``source`` bound to ``host:port`` (not started; call ``serve_forever``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            what = {"/": "page", "/index.html": "page", "/payload.json": "payload"}.get(path)
            if what is None:
                self.send_error(404, "not found")
                return
            try:
                body = source.get(what)
            except Exception as e:  # the storage cannot be read: say why, keep serving
                self.send_error(500, f"cannot build the dashboard: {e}")
                return
            self._send(body, "text/html; charset=utf-8" if what == "page"
                       else "application/json")

        def _send(self, body: bytes, ctype: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            return None

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    return Server((host, port), Handler)
