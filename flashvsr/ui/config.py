"""Settings of one ``flashvsr ui`` server, made once from the command line and passed down."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"  # this machine only: the UI has no accounts or passwords
DEFAULT_PORT = 7860
MIB = 2**20
DEFAULT_MAX_UPLOAD_MB = 2048
DEFAULT_MAX_DURATION_S = 600.0  # ten minutes of video per upload


@dataclass(frozen=True)
class UIConfig:
    """Where the server listens, which models it offers, and what it accepts."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    weights: tuple[Path, ...] = ()  # model folders offered in the page (plus the bundled model)
    device: str | None = None  # None: cuda if available, else cpu
    dtype: str | None = None  # None: bfloat16 on GPU, float32 on CPU
    threads: int | None = None  # torch CPU threads of the job worker; None: torch's default
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * MIB
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    temp_parent: Path | None = None  # where the per-server temporary folder is made; None: the system's

    def __post_init__(self):
        if self.max_upload_bytes <= 0:
            raise ValueError(f"the upload size limit must be positive, got {self.max_upload_bytes} bytes")
        if not self.max_duration_s > 0:
            raise ValueError(f"the duration limit must be positive, got {self.max_duration_s} s")
        if not 0 <= self.port < 2**16:
            raise ValueError(f"port {self.port} is not a TCP port (0…65535; 0 picks a free one)")

    @property
    def is_local_only(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


def exposure_warning(host: str, port: int) -> str | None:
    """What to tell the user when the server listens beyond this machine (None when it does not)."""
    if is_loopback(host):
        return None
    return (
        f"listening on {host}:{port}, beyond this machine: the web UI has no login, so anyone who can "
        f"reach this address can upload files, run jobs on this GPU and download the results. "
        f"Use it only on a network you trust (the default --host {DEFAULT_HOST} keeps it local)."
    )
