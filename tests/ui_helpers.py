"""Helpers of the web UI tests (and scripts/ui_screenshots.py): the real ``flashvsr ui`` server in a
subprocess, Debian's Chromium through Playwright, and small HTTP calls to the server's API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = Path(os.environ.get("FLASHVSR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 30.0
URL_LINE = re.compile(r"FlashVSR web UI: (http://\S+)")


class ServerProcess:
    """``python -m flashvsr ui --port 0 …`` with its output in a log file; ``url`` once it listens."""

    def __init__(self, log: Path, *args: str):
        self.log = log
        self.command = [sys.executable, "-m", "flashvsr", "ui", "--port", "0", *args]
        with open(log, "w") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            found = URL_LINE.search(self.log.read_text())
            if found:
                return found.group(1).rstrip("/")
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.process.kill()
        raise RuntimeError(f"the UI server did not start: {self.log.read_text()}")

    def temp_folder(self) -> Path:
        return Path(re.search(r"temporary files in (\S+);", self.log.read_text()).group(1))

    def stop(self) -> int:
        """Ctrl-C, as a user would; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def api(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """(status, JSON) of one API call, without a browser."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})  # fmt: skip
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def launch_chromium(playwright):
    """Debian's Chromium, headless; raises when it cannot start (tests turn that into a skip)."""
    if not CHROMIUM.exists():
        raise FileNotFoundError(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
