"""Replays started from the console: archived letters sent back into their routes at a rate, and
an edited letter sent under a new id after its route's contract accepted it.

A replay is the archive's (``store.replays``): its letters are fixed when it begins, each is
marked sent once the broker confirmed its copy, so a replay cut off (the console stopped, the
broker gone) is resumed from its page and sends only what is left. Its id comes with the form
that asked for it, so the same form sent twice is one replay. Copies are ``tools.dlq``'s
``replay_copy``: the letter's body and properties, only the headers gridbus wrote, and who
replayed it and when; they enter through ``gridbus.retry`` with the route as routing key.

One thread per running replay, at most one per replay id in this process.
"""

from __future__ import annotations

import difflib
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import amqp
import structlog
from kombu import Connection

from gridbus.contracts.errors import GridbusError, inert
from gridbus.routes.model import Route
from gridbus.tools import dlq
from gridbus.tools.letters import DeadLetter
from gridbus.workers.store import Store
from gridbus.workers.store.audit import AuditEntry
from gridbus.workers.store.dead_letters import ArchivedLetter, Selection

log = structlog.get_logger("gridbus.console")

#: Names the letter an edited copy was made from (its message id).
EDITED_FROM = "x-gridbus-edited-from"
#: uuid5 namespace of an edited copy's message id: the same edit of the same letter, the same id.
EDIT_ID_NAMESPACE = uuid.UUID("9b0f2d4e-6c1a-4f7b-8e3d-2a5c7b9e1f04")

#: The broker's confirms are recorded in the archive at least this often (seconds) and every
#: ``CONFIRM_BATCH`` letters: a replay cut off resends at most that much (recognised as repeats).
CONFIRM_EVERY_S = 0.2
CONFIRM_BATCH = 50
MAX_RATE = 10_000.0


class ReplayRefused(Exception):
    """A replay or edit that cannot be sent; the message says why (one line)."""


def as_dead_letter(letter: ArchivedLetter) -> DeadLetter:
    """An archived letter in the shape ``tools.letters`` reads and ``tools.dlq`` copies."""
    return DeadLetter(letter.route, letter.queue, letter.body, dict(letter.properties), dict(letter.headers))


@dataclass
class Running:
    thread: threading.Thread
    error: str | None = None


class Replayer:
    def __init__(self, store: Store, broker_url: str, routes: dict[str, Route], clock: Callable[[], float] = time.time,
                 confirm_timeout: float = 30.0):
        self.store, self.broker_url, self.routes, self.clock = store, broker_url, routes, clock
        self.confirm_timeout = confirm_timeout
        self._running: dict[str, Running] = {}
        self._lock = threading.Lock()

    # -- replays of a selection -----------------------------------------------------------------

    def start(self, replay_id: str, selection: Selection, who: str, rate: float) -> None:
        """Begin replay ``replay_id`` of ``selection`` at ``rate`` letters per second (0: as fast
        as confirms come) and send it from a thread; the same id again resumes it."""
        if not 0 <= rate <= MAX_RATE:
            raise ReplayRefused(f"a rate is between 0 (full speed) and {MAX_RATE:g} letters per second")
        foreign = sorted({g.route for g in self.store.dead_letters.groups(selection)} - set(self.routes))
        if foreign and self.store.replays.progress(replay_id) is None:
            raise ReplayRefused(
                f"letters of {', '.join(inert(r) for r in foreign[:3])} cannot be replayed: no such route runs here "
                "(narrow the filter to one route, or purge them)"
            )
        self.store.replays.begin(replay_id, selection, who, rate, self.clock())
        self.resume(replay_id, who)

    def resume(self, replay_id: str, who: str) -> None:
        progress = self.store.replays.progress(replay_id)
        if progress is None or progress.state != "running":
            return
        with self._lock:
            running = self._running.get(replay_id)
            if running is not None and running.thread.is_alive():
                return
            thread = threading.Thread(target=self._run, args=(replay_id, who, progress.rate),
                                      name=f"gridbus-replay-{replay_id[:8]}", daemon=True)
            self._running[replay_id] = Running(thread)
            thread.start()

    def error(self, replay_id: str) -> str | None:
        """Why this process's run of the replay stopped early, if it did."""
        running = self._running.get(replay_id)
        return running.error if running else None

    def is_sending(self, replay_id: str) -> bool:
        running = self._running.get(replay_id)
        return running is not None and running.thread.is_alive()

    def wait(self, replay_id: str, timeout: float) -> None:
        running = self._running.get(replay_id)
        if running is not None:
            running.thread.join(timeout)

    def _run(self, replay_id: str, who: str, rate: float) -> None:
        try:
            self._send_all(replay_id, who, rate)
        except (OSError, amqp.exceptions.AMQPError, dlq.DlqError, ReplayRefused) as exc:
            self._running[replay_id].error = inert(str(exc))[:500]
            log.warning("console.replay_stopped", replay_id=replay_id, reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug stops this replay, not the console
            self._running[replay_id].error = inert(f"{type(exc).__name__}: {exc}")[:500]
            log.exception("console.replay_failed", replay_id=replay_id)

    def _send_all(self, replay_id: str, who: str, rate: float) -> None:
        replays = self.store.replays
        sent_since_start = 0
        started = time.monotonic()
        with _channel(self.broker_url) as channel:
            returned = _returns(channel)
            while True:
                letters = replays.pending(replay_id, limit=CONFIRM_BATCH * 4)
                if not letters:
                    break
                confirmed: list[int] = []
                last_flush = time.monotonic()
                for letter in letters:
                    if letter.route not in self.routes:
                        raise ReplayRefused(
                            f"letter {letter.seq} is of {inert(letter.route)}, which no route here runs: "
                            "it cannot be replayed (purge it instead)"
                        )
                    if rate > 0:  # letter n leaves no earlier than n / rate seconds after the start
                        delay = started + sent_since_start / rate - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    self._publish(channel, returned, as_dead_letter(letter), who)
                    sent_since_start += 1
                    confirmed.append(letter.seq)
                    if len(confirmed) >= CONFIRM_BATCH or time.monotonic() - last_flush >= CONFIRM_EVERY_S:
                        replays.confirmed(replay_id, confirmed, who, self.clock())
                        confirmed, last_flush = [], time.monotonic()
                replays.confirmed(replay_id, confirmed, who, self.clock())
        replays.finish(replay_id, self.clock())
        log.info("console.replay_done", replay_id=replay_id, sent=sent_since_start, who=who)

    def _publish(self, channel, returned: list[str], letter: DeadLetter, who: str, headers: dict | None = None) -> None:
        copy = dlq.replay_copy(letter, who)
        if headers:
            copy.properties["application_headers"] = {**copy.properties["application_headers"], **headers}
        failure = dlq._publish_copy(channel, copy, letter, returned, self.confirm_timeout)
        if failure:
            raise ReplayRefused(f"message {inert(letter.message_id or '-')} of {letter.route}: {failure}")

    # -- edit and replay ------------------------------------------------------------------------

    def edit_and_replay(self, letter: ArchivedLetter, new_body: bytes, who: str) -> str:
        """Send ``new_body`` in place of the letter's, under a new message id naming the original,
        once the route's contract accepts it; returns the new id. The letter is marked replayed
        and the audit keeps both bodies and their diff, in one commit after the broker's confirm.
        ``ReplayRefused`` (nothing sent) with the contract's reason otherwise."""
        route = self.routes.get(letter.route)
        if route is None:
            raise ReplayRefused(f"letter {letter.seq} is of {inert(letter.route)}, which no route here runs")
        if letter.status != "unhandled":
            raise ReplayRefused(f"letter {letter.seq} is {letter.status}: only an unhandled letter can be edited and replayed")
        check_against_contract(route, new_body)
        new_id = str(uuid.uuid5(EDIT_ID_NAMESPACE, f"{letter.letter_id}/{new_body.hex()}"))
        original = as_dead_letter(letter)
        edited = DeadLetter(letter.route, letter.queue, new_body, {**original.properties, "message_id": new_id},
                            original.headers)
        with _channel(self.broker_url) as channel:
            self._publish(channel, _returns(channel), edited, who, {EDITED_FROM: letter.message_id})
        at = self.clock()
        with self.store.db.transaction() as cur:
            self.store.dead_letters.mark_replayed(cur, [letter.seq], who, at)
            self.store.audit.write(cur, AuditEntry(
                at, who, "edit-replay",
                f"edited letter {letter.seq} of {letter.route} and replayed it as {new_id} (from {letter.message_id})",
                1, Selection(seqs=(letter.seq,), status="any").as_dict(),
                {"original_message_id": letter.message_id, "message_id": new_id,
                 "before": _text(letter.body), "after": _text(new_body), "diff": body_diff(letter.body, new_body)},
            ))
        log.info("console.edit_replayed", seq=letter.seq, route=letter.route, message_id=new_id, who=who)
        return new_id


def check_against_contract(route: Route, body: bytes) -> None:
    """The checks a worker makes of a body before anything is done with it: its size, then its
    route's contract (encoding, schema, model rules); ``ReplayRefused`` with the reason."""
    if len(body) > route.max_body_bytes:
        raise ReplayRefused(
            f"body of {len(body)} bytes exceeds the limit of {route.max_body_bytes} bytes of route {route.name}"
        )
    try:
        route.contract.decode(body)
    except GridbusError as exc:
        raise ReplayRefused(f"{exc.kind}: {exc.reason}") from None
    except Exception as exc:  # noqa: BLE001 - a decoder bug refuses the edit, as it would the message
        raise ReplayRefused(f"contract-violation: could not decode as {route.contract.message_type}: {inert(str(exc))}") from None


def body_diff(before: bytes, after: bytes) -> str:
    return "\n".join(difflib.unified_diff(_text(before).splitlines(), _text(after).splitlines(),
                                          "original", "edited", lineterm=""))


def _text(body: bytes) -> str:
    for codec in ("utf-8", "gb18030"):
        try:
            return body.decode(codec)
        except UnicodeDecodeError:
            continue
    return body.decode("utf-8", "backslashreplace")


class _channel:
    """A confirming channel on a connection of its own, closed on leaving."""

    def __init__(self, broker_url: str, connect_timeout: float = 10):
        self._kombu = Connection(broker_url, connect_timeout=connect_timeout)

    def __enter__(self) -> amqp.Channel:
        self._kombu.connect()
        self._channel = self._kombu.connection.channel()
        self._channel.auto_decode = False
        return self._channel

    def __exit__(self, *exc) -> None:
        try:
            self._channel.close()
        except Exception:  # noqa: BLE001 - the connection may be gone already
            pass
        self._kombu.release()


def _returns(channel: amqp.Channel) -> list[str]:
    returned: list[str] = []
    channel.events["basic_return"].add(lambda exc, *_: returned.append(str(exc)))
    return returned
