"""Replays started from the console, on ``gridbus.tools.replay`` (what ``gridbus dlq replay``
and ``gridbus dlq edit`` run): a selection sent back into its routes at a rate, and an edited
letter sent under a new id once its route's contract accepted it.

A replay's letters are fixed when it begins and each is marked replayed once the broker
confirmed its copy, so a replay cut off (the console stopped, the broker gone) is resumed from
its page and sends only what is left. Its id comes with the form that asked for it, so the same
form sent twice is one replay. Here each running replay has a thread of its own, at most one per
replay id in this process; why a run stopped early is kept for its page.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import structlog

from gridbus.contracts.errors import inert
from gridbus.routes.model import Route
from gridbus.tools import replay
from gridbus.tools.dlq import DlqError
from gridbus.workers.store import Store
from gridbus.workers.store.dead_letters import ArchivedLetter, Selection

log = structlog.get_logger("gridbus.console")

MAX_RATE = 10_000.0
#: Longest wait for a replay to begin (its letters taken on) before its page is shown.
BEGIN_TIMEOUT_S = 10.0
#: Longest reason kept for a replay's page.
MAX_REASON_CHARS = 500


class ReplayRefused(Exception):
    """A replay or edit that cannot be sent; the message says why (one line)."""


@dataclass
class Running:
    thread: threading.Thread
    error: str | None = None


class Replayer:
    def __init__(self, store: Store, broker_url: str, routes: dict[str, Route], clock: Callable[[], float] = time.time):
        self.store, self.broker_url, self.routes, self.clock = store, broker_url, routes, clock
        self._running: dict[str, Running] = {}
        self._lock = threading.Lock()

    def start(self, replay_id: str, selection: Selection, who: str, rate: float) -> None:
        """Begin replay ``replay_id`` of ``selection`` at ``rate`` letters per second (0: as fast
        as confirms come) and send it from a thread; the same id again resumes it."""
        if not 0 <= rate <= MAX_RATE:
            raise ReplayRefused(f"a rate is between 0 (full speed) and {MAX_RATE:g} letters per second")
        running = self._run_in_thread(replay_id, who, lambda: replay.replay(
            self.broker_url, self.routes.values(), self.store, selection, replay_id=replay_id, rate=rate,
            operator=who, clock=self.clock))
        # the replay's page is shown next: wait until it has begun, or say why it could not
        deadline = time.monotonic() + BEGIN_TIMEOUT_S
        while self.store.replays.progress(replay_id) is None:
            if not running.thread.is_alive() or time.monotonic() > deadline:
                raise ReplayRefused(running.error or "the replay did not begin: try again")
            time.sleep(0.02)

    def resume(self, replay_id: str, who: str) -> None:
        """Send what is left of replay ``replay_id`` (begun here or elsewhere), unless it is done
        or already being sent from this process."""
        progress = self.store.replays.progress(replay_id)
        if progress is None or progress.state != "running":
            return
        self._run_in_thread(replay_id, who, lambda: replay.replay(
            self.broker_url, self.routes.values(), self.store, replay_id=replay_id, rate=progress.rate,
            operator=who, clock=self.clock))

    def error(self, replay_id: str) -> str | None:
        """Why this process's run of the replay stopped early, if it did."""
        running = self._running.get(replay_id)
        return running.error if running else None

    def is_sending(self, replay_id: str) -> bool:
        running = self._running.get(replay_id)
        return running is not None and running.thread.is_alive()

    def _run_in_thread(self, replay_id: str, who: str, send: Callable[[], object]) -> Running:
        """The run sending ``replay_id``: the one already under way here, or a new one."""
        with self._lock:
            running = self._running.get(replay_id)
            if running is not None and running.thread.is_alive():
                return running
            running = self._running[replay_id] = Running(threading.Thread())
            running.thread = threading.Thread(target=self._run, args=(replay_id, who, running, send),
                                              name=f"gridbus-replay-{replay_id[:8]}", daemon=True)
            running.thread.start()
            return running

    def _run(self, replay_id: str, who: str, running: Running, send: Callable[[], object]) -> None:
        try:
            send()
            log.info("console.replay_done", replay_id=replay_id, who=who)
        except DlqError as exc:
            running.error = inert(str(exc))[:MAX_REASON_CHARS]
            log.warning("console.replay_stopped", replay_id=replay_id, reason=running.error)
        except Exception as exc:  # noqa: BLE001 - a bug or a lost broker stops this replay, not the console
            running.error = inert(f"{type(exc).__name__}: {exc}")[:MAX_REASON_CHARS]
            log.exception("console.replay_failed", replay_id=replay_id)

    def edit_and_replay(self, letter: ArchivedLetter, new_body: bytes, who: str) -> str:
        """Send ``new_body`` in place of the letter's once its route's contract accepts it;
        returns the new message id. ``ReplayRefused`` with the reason otherwise (nothing sent)."""
        if letter.status != "unhandled":
            raise ReplayRefused(
                f"letter {letter.seq} is {letter.status}: only an unhandled letter is edited and replayed")
        try:
            result = replay.edit_and_replay(self.broker_url, self.routes.values(), self.store, letter.seq, new_body,
                                            operator=who, clock=self.clock)
        except DlqError as exc:
            raise ReplayRefused(inert(str(exc))[:2 * MAX_REASON_CHARS]) from None
        log.info("console.edit_replayed", seq=letter.seq, route=letter.route, message_id=result.message_id, who=who)
        return result.message_id
