"""Run ``gridbus worker`` as a real process, to kill it, stop it, and start it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_SOURCE_USERS

ROOT = Path(__file__).resolve().parents[2]


_LIVE: set["WorkerProcess"] = set()


def kill_leftovers() -> int:
    """Kill every worker process a test started and left running (a failed test, say)."""
    leftovers = [w for w in _LIVE if w.alive()]
    for worker in leftovers:
        worker.kill()
    _LIVE.clear()
    return len(leftovers)


class WorkerProcess:
    def __init__(self, broker_url: str, store_url: str, routes_module: str, tmp_path: Path, **env):
        self.args = [sys.executable, "-c", "from gridbus.tools.cli import main; main()", "worker", "--routes-module", routes_module]
        self.env = {
            **os.environ,
            "GRIDBUS_BROKER_URL": broker_url,
            "GRIDBUS_STORE_URL": store_url,
            "GRIDBUS_LOG_LEVEL": "INFO",
            "GRIDBUS_SOURCE_USERS": json.dumps(TEST_SOURCE_USERS),
            # The tests that look at a dead-letter queue read it from the broker: the archive's
            # ingester would take the letters away first. Tests of the archive turn it on.
            "GRIDBUS_ARCHIVE_INGEST": "false",
            **{k.upper(): str(v) for k, v in env.items()},
        }
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.exit_codes: list[int] = []

    @property
    def log_path(self) -> Path:
        return self.tmp_path / f"worker-{self.runs}.log"

    def start(self) -> "WorkerProcess":
        self.runs += 1
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        _LIVE.add(self)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reap(self) -> int | None:
        """If the process ended, record its exit code and return it."""
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            self.exit_codes.append(code)
            self.proc = None
            self._log.close()
            return code
        return None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(10)
        self.reap()

    def terminate(self, timeout: float = 30) -> int:
        self.signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return self.reap()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp_path.glob("worker-*.log")))

    def close(self) -> None:
        if self.alive():
            self.kill()
