"""The dead-letter webhook (``GRIDBUS_ALERT_WEBHOOK_URL``), for teams without Prometheus.

A dead-letter group is (route, error type, message type). The first dead letter of a group is
notified at once, with one JSON POST; later ones of the same group are counted and notified
together, at most one POST per group every ``interval_s``. A POST that fails (no answer,
HTTP 5xx or 429) is tried again with a back-off; one refused (another 4xx) is not.

Nothing of this runs in the worker's loop but ``after_settle``, which hands each batch's dead
letters, already grouped, to a queue (never waiting: a full queue counts what it drops, see
``dropped``). A thread of its own, started by the first dead letter, does the sending. The
webhook is one process's view: each worker process notifies its own dead letters, and a
restarted worker notifies a group again.

The message type of a group is the route's contract type, or ``other`` for a message whose
``type`` property is not (an unknown type is the publisher's text: it never makes a group of
its own, so a flood of made-up types is one group, not one POST each). Reasons are masked as
the logs are (``workers.logging.mask_text``) and cut.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable
from urllib.parse import urlsplit

import requests

from gridbus.contracts.errors import cut
from gridbus.workers.logging import get_logger, mask_text
from gridbus.workers.parts import Part
from gridbus.workers.pipeline import Delivery

log = get_logger("gridbus.alerts")

#: Tries of one POST, and the first wait between two (doubled each time), in seconds.
POST_ATTEMPTS = 5
POST_FIRST_BACKOFF_S = 1.0
#: Timeout of one POST (connect and read), in seconds.
POST_TIMEOUT_S = 5.0
#: After every try failed, the group's notification waits this long (or the interval, if shorter).
RETRY_LATER_S = 60.0
#: Batches of dead letters waiting for the sender, at most.
QUEUE_MAX = 10_000
#: Longest reason carried in a notification, in UTF-8 bytes.
REASON_MAX_BYTES = 500
#: The message type of a group whose messages' ``type`` is not their route's.
OTHER_TYPE = "other"

Group = tuple[str, str, str]  # (route, error type, message type)


@dataclass
class _Seen:
    """One group's dead letters so far, and what was notified of them."""

    first_seen: datetime
    last_seen: datetime
    reason: str
    message_id: str
    total: int = 0
    pending: int = 0  # dead letters not notified yet
    notified_at: float | None = None  # monotonic time of the last POST that went through
    next_try: float = 0.0  # no POST for this group before this (monotonic)


def group_of(d: Delivery) -> Group:
    message_type = d.properties.get("type")
    if message_type != d.route.contract.message_type:
        message_type = OTHER_TYPE
    return (d.route.name, d.error.kind if d.error is not None else "unknown", message_type)


class DeadLetterAlerts(Part):
    """url: where to POST. interval_s: least time between two notifications of one group.
    source: names the sending worker in each notification (``worker@host pid N``)."""

    def __init__(
        self, url: str, *, interval_s: float, source: str, clock: Callable[[], datetime],
        session: requests.Session | None = None,
    ):
        self.url, self.interval_s, self.source, self.clock = url, interval_s, source, clock
        self.session = session or requests.Session()
        self.sent = 0  # notifications that went through
        self.dropped = 0  # batches not handed over: the queue was full
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_MAX)
        self._groups: dict[Group, _Seen] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        parts = urlsplit(url)
        self._shown_url = f"{parts.scheme}://{parts.hostname}{parts.path}"  # never its credentials or query

    # -- in the worker's loop ------------------------------------------------------------------

    def after_settle(self, batch: list[Delivery]) -> None:
        dead = [d for d in batch if d.outcome == "dead-lettered"]
        if not dead:
            return
        at = self.clock()
        grouped: dict[Group, tuple[int, str, str]] = {}
        for d in dead:
            group = group_of(d)
            count, reason, message_id = grouped.get(group, (0, "", ""))
            if not count:
                reason = d.error.reason if d.error is not None else ""
                message_id = d.message_id or ""
            grouped[group] = (count + 1, reason, message_id)
        try:
            self._queue.put_nowait((at, grouped))
        except queue.Full:
            self.dropped += 1
            return
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gridbus-alerts", daemon=True)
                self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the sender (what it has not sent yet is not sent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- in the sender's thread ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                at, grouped = self._queue.get(timeout=self._next_due_in())
                self._take(at, grouped)
                while True:  # everything waiting, before sending: a burst becomes one notification
                    self._take(*self._queue.get_nowait())
            except queue.Empty:
                pass
            self._send_due()

    def _take(self, at: datetime, grouped: dict[Group, tuple[int, str, str]]) -> None:
        for group, (count, reason, message_id) in grouped.items():
            seen = self._groups.get(group)
            if seen is None:
                seen = self._groups[group] = _Seen(first_seen=at, last_seen=at, reason=reason, message_id=message_id)
            seen.last_seen, seen.reason, seen.message_id = at, reason, message_id
            seen.total += count
            seen.pending += count

    def _next_due_in(self) -> float:
        """Seconds until the next group may be notified (1 s at most: the stop flag is read)."""
        now, wait = time.monotonic(), 1.0
        for seen in self._groups.values():
            if seen.pending:
                wait = min(wait, max(0.0, self._due_at(seen) - now))
        return wait

    def _due_at(self, seen: _Seen) -> float:
        since = seen.notified_at + self.interval_s if seen.notified_at is not None else 0.0
        return max(since, seen.next_try)

    def _send_due(self) -> None:
        for group, seen in list(self._groups.items()):
            if seen.pending and time.monotonic() >= self._due_at(seen) and not self._stop.is_set():
                self._notify(group, seen)

    def _notify(self, group: Group, seen: _Seen) -> None:
        route, error_type, message_type = group
        payload = {
            "event": "gridbus.dead-letters",
            "new_group": seen.notified_at is None,
            "route": route,
            "error_type": error_type,
            "message_type": message_type,
            "count": seen.pending,
            "total": seen.total,
            "first_seen": seen.first_seen.isoformat(),
            "last_seen": seen.last_seen.isoformat(),
            "reason": cut(mask_text(seen.reason), REASON_MAX_BYTES),
            "message_id": seen.message_id,
            "source": self.source,
            "interval_s": self.interval_s,
        }
        if self._post(payload):
            self.sent += 1
            seen.pending, seen.notified_at = 0, time.monotonic()
        else:
            seen.next_try = time.monotonic() + min(RETRY_LATER_S, self.interval_s)

    def _post(self, payload: dict) -> bool:
        wait = POST_FIRST_BACKOFF_S
        for attempt in range(1, POST_ATTEMPTS + 1):
            problem = None
            try:
                answer = self.session.post(self.url, json=payload, timeout=POST_TIMEOUT_S)
            except (requests.RequestException, socket.error) as exc:
                problem = type(exc).__name__
            else:
                if 200 <= answer.status_code < 300:
                    log.info("alert.sent", url=self._shown_url, route=payload["route"],
                             error_type=payload["error_type"], count=payload["count"], attempt=attempt)
                    return True
                problem = f"HTTP {answer.status_code}"
                if 400 <= answer.status_code < 500 and answer.status_code not in (408, 425, 429):
                    log.error("alert.refused", url=self._shown_url, route=payload["route"], answer=problem,
                              action="check GRIDBUS_ALERT_WEBHOOK_URL and the receiver")
                    return False
            log.warning("alert.not_sent", url=self._shown_url, route=payload["route"], problem=problem,
                        attempt=attempt, of=POST_ATTEMPTS)
            if attempt < POST_ATTEMPTS and self._stop.wait(wait):
                return False
            wait *= 2
        return False
