"""``gridbus dlq ...`` and ``gridbus audit``: dead letters as the store's archive holds them.

Looking (list, search, show) reads the archive only: nothing is taken from a queue. Replay,
edit, purge and restore change the archive and write an audit row; "who" is ``--operator`` or,
by default, the OS user running the command. Every command takes ``--json`` for scripts (one
JSON document on standard output, ASCII only, so no byte of a letter reaches a terminal raw).

Exit codes: 0 done; 1 nothing matched, or the broker or store refused (the output says which);
2 the command line is incomplete or unsafe (purge without ``--yes``).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path

import click

from gridbus.tools import dlq as dead_letters
from gridbus.tools.commands import _broker_option, _broker_url, _routes, _routes_option, _table
from gridbus.tools.context import settings
from gridbus.tools.letters import DeadLetter, shown, visible
from gridbus.workers import headers as H
from gridbus.workers.runtime import CHINA_TZ
from gridbus.workers.store.dead_letters import STATUSES, ArchivedLetter, LetterSummary, Selection

BODY_PREVIEW_CHARS = 4000
#: Characters of a property, header value or reason shown before it is cut (with a marker).
VALUE_PREVIEW_CHARS = 500

_store_option = click.option("--store", "store_url", default=None, help="Store URL; overrides GRIDBUS_STORE_URL.")
_json_option = click.option("--json", "as_json", is_flag=True, help="One JSON document on standard output.")
_operator_option = click.option("--operator", default=None, help="Who does it, for the audit (default: the OS user).")


def _selection_options(command):
    """The filters every selecting command shares."""
    options = [
        click.option("--route", default=None, help="Only this route ('(unrouted)' for the unrouted queue)."),
        click.option("--error-type", default=None, help="Only this error type (as `dlq list` shows it)."),
        click.option("--message-type", default=None, help="Only this message type."),
        click.option("--since", default=None, metavar="TIME", help="Dead-lettered at or after TIME (ISO 8601; China time unless it says)."),
        click.option("--until", default=None, metavar="TIME", help="Dead-lettered before TIME."),
        click.option("--older-than", "older_than", default=None, type=click.FloatRange(min=0), metavar="DAYS",
                     help="Dead-lettered more than DAYS days ago."),
        click.option("--key", default=None, help="Only letters with this business key (credit code, user unit...)."),
        click.option("--text", default=None, help="Only letters whose reason contains this text (any case)."),
        click.option("--id", "message_id", default=None, help="Only the letter(s) with this message id."),
        click.option("--seq", "seqs", multiple=True, type=int, help="Only the archived letter with this number (repeatable)."),
        click.option("--status", default="unhandled", show_default=True, type=click.Choice(STATUSES)),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _selection(route, error_type, message_type, since, until, older_than, key, text, message_id, seqs, status,
               now: float | None = None) -> Selection:
    until_at = _time(until, "--until")
    if older_than is not None:
        cutoff = (now if now is not None else datetime.now(CHINA_TZ).timestamp()) - older_than * 86400
        until_at = cutoff if until_at is None else min(until_at, cutoff)
    return Selection(
        route=route, error_type=error_type, message_type=message_type, since=_time(since, "--since"), until=until_at,
        key=key, text=text, message_id=message_id, seqs=tuple(seqs) or None, status=status,
    )


def _time(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 date or time", param_hint=option) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=CHINA_TZ)).timestamp()


def _when(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, CHINA_TZ).isoformat(timespec="seconds")


def _open_store(store_url: str | None):
    from gridbus.workers.store import Store

    return Store(store_url or settings().store_url)


def _echo_json(document) -> None:
    click.echo(json.dumps(document, ensure_ascii=True, indent=2, default=str))


def _failed(exc: dead_letters.DlqError) -> click.ClickException:
    """The error for the terminal: it may quote a message id or a header, so it is made visible."""
    return click.ClickException(visible(str(exc)))


# --- dlq -----------------------------------------------------------------------------------------


@click.group("dlq")
def dlq() -> None:
    """Dead letters in the archive: list, search, show, replay, edit, purge, restore."""


@dlq.command("ingest")
@click.option("--once", is_flag=True, help="Stop when the dead-letter queues are empty (for scripts); default: run until SIGTERM.")
@_broker_option
@_routes_option
@_store_option
def dlq_ingest(once, broker, routes_module, store_url) -> None:
    """Take the dead-letter queues into the archive (what every worker also does; see the README)."""
    import signal

    from gridbus.tools.archive import Ingester
    from gridbus.tools.retention import Retention, RetentionSettings

    store = _open_store(store_url)
    try:
        retention = Retention(store, RetentionSettings.of(settings()), who=f"{dead_letters.operator_name()} (dlq ingest)")
        ingester = Ingester(_broker_url(broker), _routes(routes_module), store, retention=retention)
        if not once:
            signal.signal(signal.SIGTERM, lambda *_: ingester.stop())
        archived = ingester.run(until_idle_s=1.0 if once else None)
    finally:
        store.close()
    click.echo(f"{archived} dead letter(s) archived")


@dlq.command("list")
@_selection_options
@_store_option
@_json_option
def dlq_list(store_url, as_json, **filters) -> None:
    """Dead letters by route, error type and message type: count, first and last seen."""
    store = _open_store(store_url)
    try:
        groups = store.dead_letters.groups(_selection(**filters))
    finally:
        store.close()
    if as_json:
        _echo_json([g.__dict__ for g in groups])
        return
    v = VALUE_PREVIEW_CHARS
    rows = [
        (shown(g.route, v), shown(g.error_type, 80), shown(g.message_type, 80), g.count, _when(g.first_seen),
         _when(g.last_seen))
        for g in groups
    ]
    click.echo(_table(rows, ("ROUTE", "ERROR TYPE", "MESSAGE TYPE", "COUNT", "FIRST SEEN", "LAST SEEN")))
    click.echo(f"\n{sum(g.count for g in groups)} dead letter(s) ({filters['status']})")


@dlq.command("search")
@_selection_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--before", default=None, type=int, help="Only letters archived before the one numbered BEFORE (the next page).")
@_store_option
@_json_option
def dlq_search(limit, before, store_url, as_json, **filters) -> None:
    """Letters matching the filters, newest first, one line each."""
    store = _open_store(store_url)
    try:
        found = store.dead_letters.search(_selection(**filters), limit=limit, before=before)
    finally:
        store.close()
    if as_json:
        _echo_json([_summary_json(s) for s in found])
        return
    rows = [
        (s.seq, _when(s.dead_lettered_at), shown(s.route, 80), shown(s.error_type, 40), shown(s.message_id, 60),
         shown(", ".join(s.business_keys), 60), s.status, shown(s.reason, 80))
        for s in found
    ]
    click.echo(_table(rows, ("SEQ", "DEAD-LETTERED", "ROUTE", "ERROR TYPE", "MESSAGE", "KEYS", "STATUS", "REASON")))
    if len(found) == limit:
        click.echo(f"\nmore: --before {found[-1].seq}")


@dlq.command("show")
@_selection_options
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="At most this many.")
@click.option(
    "--full", "full_path", default=None, metavar="PATH",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
    help="Write the exact body bytes of the one matching dead letter to PATH ('-': standard output, "
    "only when it is not a terminal).",
)
@_store_option
@_json_option
def dlq_show(limit, full_path, store_url, as_json, **filters) -> None:
    """Dead letters with every property, header and the body, newest first.

    Everything is printed inert: control characters and escape sequences as visible escapes,
    long values and bodies cut with a marker. --full PATH gives the exact bytes of a body.
    """
    to_stdout = full_path == "-"
    if to_stdout and sys.stdout.isatty():
        raise click.UsageError("--full - writes raw bytes: redirect standard output to a file or pipe, or give a PATH")
    if filters["message_id"] or filters["seqs"]:
        filters["status"] = "any" if filters["status"] == "unhandled" else filters["status"]
    store = _open_store(store_url)
    try:
        letters = [store.dead_letters.get(s.seq) for s in store.dead_letters.search(_selection(**filters), limit=limit)]
    finally:
        store.close()
    if as_json:
        _echo_json([_letter_json(x) for x in letters])
        return
    if not letters:
        found = "no dead letters found" + (f" with message id {visible(filters['message_id'])}" if filters["message_id"] else "")
        click.echo(found, err=to_stdout)
        if filters["message_id"] or filters["seqs"] or full_path:
            raise SystemExit(1)
        return
    if full_path is not None:
        if len(letters) != 1:
            raise click.UsageError(
                f"--full writes the body of one dead letter, and {len(letters)} match: choose one with --id or --seq"
            )
        [letter] = letters
        if to_stdout:
            sys.stdout.flush()
            sys.stdout.buffer.write(letter.body)
            sys.stdout.buffer.flush()
            click.echo(f"wrote the {len(letter.body)} body bytes of {_letter_title(as_dead_letter(letter))}", err=True)
            return
        _write_private(Path(full_path), letter.body)
    for letter in letters:
        click.echo(_render_archived(letter))
    if full_path is not None:
        click.echo(f"body written to {visible(full_path)} ({len(letters[0].body)} bytes)")


@dlq.command("replay")
@_selection_options
@click.option("--rate", default=0.0, type=click.FloatRange(min=0), help="Letters per second at most (default: as fast as the broker confirms).")
@click.option("--resume", "resume_id", default=None, metavar="REPLAY_ID", help="Go on with a replay that was cut off.")
@_operator_option
@_broker_option
@_routes_option
@_store_option
@_json_option
def dlq_replay(rate, resume_id, operator, broker, routes_module, store_url, as_json, **filters) -> None:
    """Send matching letters back into their route's work queue, at --rate, resumable.

    Without filters every unhandled letter of every route is replayed; there is no cap on the
    count. Progress goes to standard error; the replay id printed first resumes it (--resume)."""
    from gridbus.tools.replay import replay

    selection = None if resume_id else _selection(**filters)
    store = _open_store(store_url)

    def progress(p) -> None:
        click.echo(f"replay {p.replay_id}: {p.sent}/{p.total} sent, {p.left} left", err=True)

    try:
        done = replay(
            _broker_url(broker), _routes(routes_module), store, selection, replay_id=resume_id, rate=rate,
            operator=operator, confirm_timeout=settings().confirm_timeout_s, progress=None if as_json else progress,
        )
    except dead_letters.DlqError as exc:
        raise _failed(exc) from exc
    finally:
        store.close()
    if as_json:
        _echo_json(done.__dict__)
        return
    passed = f", {done.passed_over} passed over (replayed or purged meanwhile)" if done.passed_over else ""
    click.echo(f"replay {done.replay_id}: {done.sent} of {done.total} replayed{passed}")


@dlq.command("replays")
@_store_option
@_json_option
def dlq_replays(store_url, as_json) -> None:
    """Replays not finished (cut off, or under way elsewhere): resume one with `dlq replay --resume ID`."""
    store = _open_store(store_url)
    try:
        running = store.replays.unfinished()
    finally:
        store.close()
    if as_json:
        _echo_json([p.__dict__ for p in running])
        return
    rows = [(p.replay_id, _when(p.started_at), visible(p.who), p.total, p.sent, p.left) for p in running]
    click.echo(_table(rows, ("REPLAY", "STARTED", "WHO", "TOTAL", "SENT", "LEFT")))


@dlq.command("edit")
@click.option("--seq", required=True, type=int, help="The archived letter (its number in `dlq search`).")
@click.option("--body-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The corrected body, exactly as it is to be sent.")
@click.option("--header", "headers", multiple=True, metavar="NAME=VALUE",
              help="Set one of the letter's own headers (not x-gridbus-* nor the broker's).")
@_operator_option
@_broker_option
@_routes_option
@_store_option
@_json_option
def dlq_edit(seq, body_file, headers, operator, broker, routes_module, store_url, as_json) -> None:
    """Replay one letter with a corrected body, once it meets its route's contract."""
    from gridbus.tools.replay import edit_and_replay

    changes = {}
    for pair in headers:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--header")
        changes[name] = value
    store = _open_store(store_url)
    try:
        result = edit_and_replay(
            _broker_url(broker), _routes(routes_module), store, seq, body_file.read_bytes(), headers=changes,
            operator=operator, confirm_timeout=settings().confirm_timeout_s,
        )
    except dead_letters.DlqError as exc:
        raise _failed(exc) from exc
    finally:
        store.close()
    if as_json:
        _echo_json(result.__dict__)
        return
    click.echo(f"replayed dead letter {seq} of {result.route} as message {visible(result.message_id)}")
    click.echo(visible(result.diff, layout=True))


@dlq.command("purge")
@_selection_options
@click.option("--yes", "--yes-i-am-sure", "sure", is_flag=True,
              help="Required: purged letters are removed for good once the restore window is over.")
@_operator_option
@_store_option
@_json_option
def dlq_purge(sure, operator, store_url, as_json, **filters) -> None:
    """Purge matching letters from the archive: hidden now, restorable for
    GRIDBUS_ARCHIVE_RESTORE_DAYS (`dlq restore`), then removed by the worker."""
    selection = _selection(**filters)
    if not sure:
        raise click.UsageError(
            "purging hides the matching dead letters and removes them for good once the restore window is over; "
            "look first (`gridbus dlq search` with the same filters), then add --yes"
        )
    store = _open_store(store_url)
    try:
        count = store.dead_letters.soft_delete(selection, dead_letters.operator_name(operator), _now())
    finally:
        store.close()
    if as_json:
        _echo_json({"purged": count, "selection": selection.as_dict()})
        return
    click.echo(f"purged {count} dead letter(s); `gridbus dlq restore` with the same filters brings them back")


@dlq.command("restore")
@_selection_options
@_operator_option
@_store_option
@_json_option
def dlq_restore(operator, store_url, as_json, **filters) -> None:
    """Bring back purged letters that are not removed yet (the filters select among the purged)."""
    selection = _selection(**filters)
    store = _open_store(store_url)
    try:
        count = store.dead_letters.restore(selection, dead_letters.operator_name(operator), _now())
    finally:
        store.close()
    if as_json:
        _echo_json({"restored": count})
        return
    click.echo(f"restored {count} dead letter(s)")


# --- audit ---------------------------------------------------------------------------------------


@click.command("audit")
@click.option("--action", default=None, help="Only this action (replay, edit-replay, purge, restore, remove, retention).")
@click.option("--since", default=None, metavar="TIME", help="From TIME on (ISO 8601; China time unless it says).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@_store_option
@_json_option
def audit(action, since, limit, store_url, as_json) -> None:
    """Who replayed, edited, purged, restored or changed the retention of what, newest first."""
    store = _open_store(store_url)
    try:
        rows = store.audit.rows(action=action, since=_time(since, "--since"), limit=limit)
    finally:
        store.close()
    if as_json:
        _echo_json([r.__dict__ for r in rows])
        return
    table = [
        (_when(r.at), visible(r.who), r.action, r.count, shown(r.what, 120), shown(json.dumps(r.selection, ensure_ascii=False), 120))
        for r in rows
    ]
    click.echo(_table(table, ("AT", "WHO", "ACTION", "COUNT", "WHAT", "SELECTION")))


# --- rendering -----------------------------------------------------------------------------------


def _now() -> float:
    return datetime.now(CHINA_TZ).timestamp()


def as_dead_letter(letter: ArchivedLetter) -> DeadLetter:
    """An archived letter read as ``tools.letters`` reads one (which headers gridbus wrote)."""
    return DeadLetter(
        route=letter.route, queue=letter.queue, body=letter.body,
        properties={**letter.properties, "application_headers": letter.headers}, headers=letter.headers,
    )


def _summary_json(s: LetterSummary) -> dict:
    return {name: getattr(s, name) for name in LetterSummary.__dataclass_fields__} | {"status": s.status}


def _letter_json(letter: ArchivedLetter) -> dict:
    import base64

    document = _summary_json(letter)
    document["properties"] = {str(k): _jsonable(v) for k, v in letter.properties.items()}
    document["headers"] = {str(k): _jsonable(v) for k, v in letter.headers.items()}
    document["body_base64"] = base64.b64encode(letter.body).decode("ascii")
    shown_as, text, why = as_dead_letter(letter).body_text()
    document["body_text"] = text if isinstance(text, str) and shown_as not in ("base64",) else None
    return document


def _jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return {"bytes_hex": bytes(value).hex()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _render_archived(letter: ArchivedLetter) -> str:
    """An archived letter for the terminal: its archive record, then the letter itself."""
    v = VALUE_PREVIEW_CHARS
    record = [
        f"archived:    #{letter.seq} at {_when(letter.archived_at)}, dead-lettered {_when(letter.dead_lettered_at)}, "
        f"{letter.attempts} attempt(s), {letter.status}",
        f"keys:        {shown(', '.join(letter.business_keys) or '(none)', v)}",
    ]
    if letter.replayed_at is not None:
        record.append(f"replayed:    {letter.replays} time(s), last by {shown(letter.replayed_by or '-', 64)} "
                      f"at {_when(letter.replayed_at)}")
    if letter.deleted_at is not None:
        record.append(f"purged:      by {shown(letter.deleted_by or '-', 64)} at {_when(letter.deleted_at)}")
    first, *rest = _render_letter(as_dead_letter(letter), letter.error_type, letter.reason).split("\n")
    return "\n".join([first, *record, *rest])


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (a body may hold personal data)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _letter_title(letter: DeadLetter) -> str:
    return f"{letter.queue}: message {shown(letter.message_id or '(no message_id)', VALUE_PREVIEW_CHARS)}"


_NO_SOURCE_USER = {False: "(none recorded: the route refuses a replay as unauthorised)", True: "(none)"}


def _render_letter(letter: DeadLetter, error_type: str | None = None, error: str | None = None) -> str:
    """One dead letter for the terminal: every field through ``shown`` (escaped, cut with a marker).
    error_type, error: as archived (the ingester read them with the delivery's exchange and key)."""
    v = VALUE_PREVIEW_CHARS
    lines = [
        f"=== {_letter_title(letter)}",
        f"route:       {shown(letter.route, v)}",
        f"error type:  {shown(letter.error_type if error_type is None else error_type, v)}",
        f"error:       {shown(letter.error_message if error is None else error, v)}",
        f"source user: {shown(letter.source_user or _NO_SOURCE_USER[letter.route == dead_letters.UNROUTED], v)}",
        "properties:",
    ]
    properties = {k: val for k, val in letter.properties.items() if k != "application_headers"}
    lines += [f"  {shown(k, v)}: {shown(val, v)}" for k, val in _sorted(properties)]
    untrusted, deaths = letter.untrusted_headers, letter.deaths
    lines.append("headers:")
    lines += [
        f"  {shown(k, v)}: {shown(val, v)}"
        for k, val in _sorted(letter.headers)
        if k not in untrusted and not (k == H.X_DEATH and deaths)
    ]
    for death in deaths:
        lines.append(
            f"  x-death: {shown(death.reason, v)} in {shown(death.queue, v)} x{death.count} "
            f"(from exchange {shown(death.exchange or '-', v)}, "
            f"keys {shown(', '.join(death.routing_keys) or '-', v)}, at {death.time})"
        )
    if untrusted:
        lines.append("UNTRUSTED headers (x-gridbus-* names, but not written by gridbus: set by the publisher):")
        lines += [f"  {shown(k, v)}: {shown(val, v)}" for k, val in _sorted(untrusted)]
    lines += _render_body(letter)
    return "\n".join(lines) + "\n"


def _render_body(letter: DeadLetter) -> list[str]:
    """The body's heading and its first ``BODY_PREVIEW_CHARS``, each line indented (so no line of a
    body can pass for a line of the listing)."""
    shown_as, text, why = letter.body_text()
    cut = len(text) - BODY_PREVIEW_CHARS
    unit = "bytes" if isinstance(text, bytes) else "characters"
    how = {"bytes": "bytes, non-ASCII and control bytes as \\xNN", "base64": "base64"}.get(shown_as, shown_as)
    heading = f"body ({len(letter.body)} bytes, shown as {how}"
    heading += f"; {visible(why)}" if why else ""
    if cut > 0:
        heading += f"; first {BODY_PREVIEW_CHARS:,} {unit} of {len(text):,}, --full PATH for the exact bytes"
    body = visible(text[:BODY_PREVIEW_CHARS] if cut > 0 else text, layout=True)
    if cut > 0:
        body += f"...[{cut:,} more {unit} cut]"
    return [heading + "):", *("  " + line for line in body.split("\n"))]


def _sorted(mapping: dict) -> list:
    return sorted(mapping.items(), key=lambda item: str(item[0]))
