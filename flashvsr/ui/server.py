"""Running the web app: bind, say where it is, serve until Ctrl-C, remove every temporary file."""

from __future__ import annotations

import socket
import sys
import webbrowser

import uvicorn

from .app import create_app
from .config import UIConfig, exposure_warning

SHUTDOWN_GRACE_S = 3  # open downloads and video streams get this long to finish on Ctrl-C
LISTEN_BACKLOG = 128


def serve(config: UIConfig, open_browser: bool = False) -> None:
    """Serve until interrupted. The socket is bound first, so ``port=0`` works and the printed
    address is the real one."""
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{_url_host(host)}:{port}/"
    warning = exposure_warning(config.host, port)
    if warning:
        print(f"flashvsr: warning: {warning}", file=sys.stderr)
    app = create_app(config)
    print(f"FlashVSR web UI: {url}  (temporary files in {app.state.services.workspace.root}; Ctrl-C to stop)",
          flush=True)  # fmt: skip
    if open_browser:
        webbrowser.open(url)
    server = uvicorn.Server(uvicorn_config(app))
    try:
        server.run(sockets=[sock])
    finally:
        app.state.services.close()  # also when uvicorn stopped before the app's shutdown ran
        sock.close()


def uvicorn_config(app) -> uvicorn.Config:
    return uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)  # connections wait in the backlog until uvicorn takes over
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host") from None
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
