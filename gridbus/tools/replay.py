"""Replay archived dead letters into their routes: a selection at a rate, resumable; or one
letter with an edited body, checked against its route's contract first.

A replay takes on its letters when it begins (``store.replays``) and has a stable id. It sends
them in chunks through the retry exchange (routing key = route name, so into the route's work
queue only), waits for the broker's confirms, and only then marks them replayed. Cut off
anywhere, it is resumed with its id: what was confirmed and marked is not sent again; a chunk
confirmed but not yet marked when the process died is sent again with the same message ids, and
the route's idempotency store recognises the repeat.

Each copy is ``dlq.replay_copy`` of the letter as archived (only the headers gridbus wrote, its
history kept, who replayed it and when added) with ``x-gridbus-replay-id``. An edited copy gets a
new message id naming the original (``<original>~edit-<digest of the body>``: the same edit sent
twice has one id) and ``x-gridbus-edited-from``; both bodies and their diff go in the audit row.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Iterable

import amqp
from kombu import Connection

from gridbus.contracts import naming
from gridbus.contracts.errors import ContractViolation, GridbusError, inert
from gridbus.routes.model import Route
from gridbus.tools.dlq import DlqError, operator_name, replay_copy
from gridbus.tools.letters import GRIDBUS_PREFIX, TEXT_ENCODINGS, UNROUTED, UNROUTED_ERROR_TYPE, DeadLetter, visible
from gridbus.workers.amqp.publisher import Publisher
from gridbus.workers.fate import BROKER_HEADERS
from gridbus.workers.store import Store
from gridbus.workers.store.audit import AuditEntry
from gridbus.workers.store.dead_letters import ArchivedLetter, Selection
from gridbus.workers.store.replays import ReplayProgress

REPLAY_ID = "x-gridbus-replay-id"  # the replay that sent this copy
EDITED_FROM = "x-gridbus-edited-from"  # message id of the letter whose edited body this copy carries

#: Least time between two progress reports, in seconds (each counts the replay's letters).
PROGRESS_EVERY_S = 1.0

#: Most characters of each body version kept in the audit row (a body is at most 1 MiB anyway).
AUDIT_BODY_MAX_CHARS = 64 * 1024


@dataclass(frozen=True)
class EditResult:
    seq: int
    route: str
    original_message_id: str
    message_id: str
    diff: str


def replay(
    broker_url: str,
    routes: Iterable[Route],
    store: Store,
    selection: Selection | None = None,
    *,
    replay_id: str | None = None,
    rate: float = 0.0,
    operator: str | None = None,
    chunk: int = 200,
    confirm_timeout: float = 30.0,
    progress: Callable[[ReplayProgress], None] | None = None,
    after_confirm: Callable[[list[ArchivedLetter]], None] | None = None,
    after_mark: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> ReplayProgress:
    """Replay the letters of ``selection`` (a new replay), or resume replay ``replay_id``.

    rate: letters per second at most (0: as fast as the broker confirms); chunk: letters per
    confirm wait (smaller when the rate asks for it, so a chunk takes about a fifth of a second);
    progress: called at most every ``PROGRESS_EVERY_S`` and at the end; after_confirm: called between a chunk's confirms and its
    marking, after_mark after it with the letters sent so far by this call (tests cut a replay
    off there). Raises ``DlqError`` when it cannot go on; what was not
    sent stays in the replay, to resume."""
    by_name = {r.name: r for r in routes}
    who = operator_name(operator)
    if replay_id is not None and store.replays.progress(replay_id) is not None:
        begun = store.replays.progress(replay_id)
    elif selection is None:
        raise DlqError(f"there is no replay {visible(replay_id or '-')} to resume (`gridbus dlq replays` lists them)")
    else:
        _refuse_unrouted(selection)
        if selection.route is None and selection.routes is None and selection.seqs is None:
            # only the letters of these routes (never the unrouted ones); letters chosen by
            # number are taken as chosen: one of another route stops the replay when it comes up
            selection = replace(selection, routes=tuple(sorted(by_name)))
        begun = store.replays.begin(replay_id or uuid.uuid4().hex, selection, who, rate, clock())
    replay_id = begun.replay_id
    step = max(1, min(chunk, int(rate / 5) or 1)) if rate > 0 else chunk
    with Connection(broker_url, connect_timeout=10) as conn:
        publisher = _publisher(conn, confirm_timeout)
        started, sent_here, last, told = time.monotonic(), 0, 0, -PROGRESS_EVERY_S
        while True:
            letters = store.replays.pending(replay_id, limit=step, after=last)
            if not letters:
                break
            last = letters[-1].seq
            confirmed = _send(publisher, letters, by_name, who, replay_id, clock)
            if after_confirm is not None:
                after_confirm(confirmed)
            store.replays.confirmed(replay_id, [x.seq for x in confirmed], who, clock())
            sent_here += len(confirmed)
            if after_mark is not None:
                after_mark(sent_here)
            if rate > 0:  # pace: n letters of this run take at least n / rate seconds
                time.sleep(max(0.0, started + sent_here / rate - time.monotonic()))
            if progress is not None and time.monotonic() >= told + PROGRESS_EVERY_S:
                told = time.monotonic()
                progress(store.replays.progress(replay_id))
            if len(confirmed) < len(letters):
                raise DlqError(_refused(letters, confirmed, replay_id))
        publisher.close()
    store.replays.finish(replay_id, clock())
    done = store.replays.progress(replay_id)
    if progress is not None:
        progress(done)
    return done


def _send(publisher: Publisher, letters: list[ArchivedLetter], by_name: dict, who: str, replay_id: str,
          clock: Callable[[], float]) -> list[ArchivedLetter]:
    """Publish the copies of ``letters`` and wait for their confirms: those the broker took."""
    tickets = {}
    for letter in letters:
        route = by_name.get(letter.route)
        if route is None:
            raise DlqError(
                f"dead letter {letter.seq} (message {visible(letter.message_id or '-')}) is of route "
                f"{visible(letter.route)}, which these routes do not have: replay {replay_id} stops here; "
                "resume it with the routes module that has it"
            )
        copy = _copy(letter, route, who, clock)
        headers = dict(copy.properties.pop("application_headers"))
        headers[REPLAY_ID] = replay_id
        tickets[_publish(publisher, letter.route, copy.body, copy.properties, headers)] = letter
    settled = publisher.wait()
    return [tickets[t] for t, error in settled.items() if error is None and t in tickets]


def _refused(letters: list[ArchivedLetter], confirmed: list[ArchivedLetter], replay_id: str) -> str:
    first = next(x for x in letters if x not in confirmed)
    return (
        f"the broker did not take the copy of dead letter {first.seq} (message {visible(first.message_id or '-')}, "
        f"route {visible(first.route)}) and {len(letters) - len(confirmed) - 1} more: is the work queue declared "
        f"(`gridbus topology declare`) and not full? Replay {replay_id} stops; resume it with --resume {replay_id}"
    )


def edit_and_replay(
    broker_url: str,
    routes: Iterable[Route],
    store: Store,
    seq: int,
    body: bytes,
    *,
    headers: dict | None = None,
    operator: str | None = None,
    confirm_timeout: float = 30.0,
    clock: Callable[[], float] = time.time,
) -> EditResult:
    """Send archived letter ``seq`` again with ``body`` (and its own headers changed by
    ``headers``), once the body meets its route's contract; audited with both versions."""
    by_name = {r.name: r for r in routes}
    letter = store.dead_letters.get(seq)
    if letter is None or letter.status == "deleted":
        raise DlqError(f"there is no dead letter {seq} in the archive (purged ones must be restored first)")
    route = by_name.get(letter.route)
    if route is None:
        _refuse_unrouted(Selection(route=letter.route))
        raise DlqError(f"dead letter {seq} is of route {visible(letter.route)}, which these routes do not have")
    original = letter.message_id or f"dead-letter-{seq}"
    _check_contract(route, body, seq, original)
    edited_headers = {**letter.headers, **_editable(headers or {})}
    new_id = f"{original}~edit-{hashlib.sha256(body).hexdigest()[:12]}"
    who = operator_name(operator)
    edited = replace(letter, body=body, headers=edited_headers,
                     properties={**letter.properties, "message_id": new_id})
    copy = _copy(edited, route, who, clock)
    copy_headers = {**copy.properties.pop("application_headers"), EDITED_FROM: original}
    with Connection(broker_url, connect_timeout=10) as conn:
        publisher = _publisher(conn, confirm_timeout)
        ticket = _publish(publisher, route.name, body, copy.properties, copy_headers)
        error = publisher.wait().get(ticket)
        publisher.close()
    if error is not None:
        raise DlqError(f"the broker did not take the edited copy of message {visible(original)} of {route.name}: "
                       f"{inert(str(error))}; nothing was marked, edit and replay again")
    before, after = _text(letter.body), _text(body)
    diff = "".join(difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), "before", "after"))
    entry = AuditEntry(
        clock(), who, "edit-replay", f"edited and replayed message {visible(original)} of {route.name} as {new_id}", 1,
        {"seqs": [seq]},
        {"original_message_id": original, "message_id": new_id, "before": before[:AUDIT_BODY_MAX_CHARS],
         "after": after[:AUDIT_BODY_MAX_CHARS], "diff": diff[:AUDIT_BODY_MAX_CHARS],
         "headers_changed": sorted(_editable(headers or {}))},
    )
    store.dead_letters.record_replay(seq, who, clock(), entry)
    return EditResult(seq, route.name, original, new_id, diff)


def _check_contract(route: Route, body: bytes, seq: int, original: str) -> None:
    """Refuse an edited body its route would dead-letter again, with the contract's reason."""
    where = f"the edited body of dead letter {seq} (message {visible(original)}) on route {route.name}"
    if len(body) > route.max_body_bytes:
        raise DlqError(f"{where} is {len(body):,} bytes, more than the route's {route.max_body_bytes:,}: nothing sent")
    try:
        route.contract.decode(body)
    except GridbusError as exc:
        raise DlqError(f"{where} does not meet the contract {route.contract.message_type}: {exc.reason}; "
                       "nothing sent") from exc
    except Exception as exc:  # noqa: BLE001 - a decoder's bug is a refusal, as in the worker
        reason = ContractViolation(f"could not decode as {route.contract.message_type}: {exc}").reason
        raise DlqError(f"{where} does not meet its contract: {reason}; nothing sent") from exc


def _editable(headers: dict) -> dict:
    """The header changes an operator may make: none of gridbus's or the broker's own."""
    owned = sorted(k for k in headers if str(k).lower().startswith(GRIDBUS_PREFIX) or k in BROKER_HEADERS)
    if owned:
        raise DlqError(f"headers {', '.join(visible(str(k)) for k in owned)} belong to gridbus or the broker "
                       "and cannot be edited")
    return dict(headers)


def _copy(letter: ArchivedLetter, route: Route, who: str, clock: Callable[[], float]) -> amqp.Message:
    """``dlq.replay_copy`` of the letter as archived."""
    dead = DeadLetter(
        route=letter.route, queue=letter.queue, body=letter.body,
        properties={**letter.properties, "application_headers": letter.headers}, headers=letter.headers,
        retry_only=route.source.internal,
    )
    return replay_copy(dead, who, datetime.fromtimestamp(clock(), timezone.utc))


def _publisher(conn: Connection, confirm_timeout: float) -> Publisher:
    try:
        conn.connect()
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported the same way
        raise DlqError(f"cannot reach RabbitMQ at {conn.as_uri()}: {exc}") from exc
    return Publisher(conn, confirm_timeout_s=confirm_timeout)


def _publish(publisher: Publisher, route: str, body: bytes, properties: dict, headers: dict) -> int:
    return publisher.publish(
        exchange=naming.RETRY_EXCHANGE, routing_key=route, body=body, properties=properties, headers=headers
    )


def _refuse_unrouted(selection: Selection) -> None:
    if selection.route == UNROUTED or selection.error_type == UNROUTED_ERROR_TYPE:
        raise DlqError(
            "unrouted messages cannot be replayed: no route is bound to their exchange and routing key. Add a "
            "route for them (then republish from the source), or purge them with "
            f"`gridbus dlq purge --route '{UNROUTED}' --yes`."
        )


def _text(body: bytes) -> str:
    """A body as text for the audit and its diff: UTF-8 or GB18030 when it decodes, else base64."""
    for codec in ("utf-8", TEXT_ENCODINGS["gb18030"]):
        try:
            return body.decode(codec)
        except UnicodeDecodeError:
            continue
    return "base64:" + base64.b64encode(body).decode("ascii")
