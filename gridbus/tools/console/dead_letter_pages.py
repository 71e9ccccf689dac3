"""The dead-letter pages: groups, the letters of a filter, one letter, replays, the audit log.

| path | role | what |
|---|---|---|
| ``GET /dead-letters`` | viewer | groups (route x error type x message type), filtered and sorted |
| ``GET /dead-letters/letters`` | viewer | the letters of a filter, newest first, 100 a page |
| ``GET /dead-letters/{seq}`` | viewer | one letter: facts, properties, headers, body; edit form |
| ``POST /dead-letters/replay`` | operator | replay the selected letters or every letter of the filter at a rate |
| ``POST /dead-letters/{seq}/edit`` | operator | check an edited body against the contract, send it under a new id |
| ``POST /dead-letters/note`` | operator | a note on a group (an audit row) |
| ``POST /dead-letters/purge``, ``/restore`` | admin | soft-delete (after a confirmation) or bring back |
| ``GET /replays/{id}``, ``POST /replays/{id}/resume`` | viewer, operator | a replay's progress; resume one cut off |
| ``GET /audit`` | viewer | the audit trail, newest first |

A filter is the query string (or the form's fields): route, error_type, message_type, key,
text (part of the reason), since/until (dates, UTC+8), older_than_days, status.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gridbus.tools.console.accounts import Account
from gridbus.tools.console.auth import Refused, page
from gridbus.tools.console.letter_view import edit_box, view
from gridbus.tools.console.rendering import Lines, render
from gridbus.tools.console.replayer import ReplayRefused
from gridbus.workers.runtime import CHINA_TZ
from gridbus.workers.store.audit import ACTIONS, AuditEntry
from gridbus.workers.store.dead_letters import STATUSES, Selection

PAGE_SIZE = 100
FILTER_FIELDS = ("route", "error_type", "message_type", "key", "text", "since", "until", "older_than_days", "status")
GROUP_SORTS = ("count", "route", "error_type", "message_type", "first_seen", "last_seen")
MAX_NOTE_CHARS = 500
MAX_FIELD_CHARS = 200
DAY_S = 86_400.0


def routes() -> list[Route]:
    return [
        Route("/dead-letters", groups_page),
        Route("/dead-letters/letters", letters_page),
        Route("/dead-letters/replay", replay, methods=["POST"]),
        Route("/dead-letters/purge", purge, methods=["POST"]),
        Route("/dead-letters/restore", restore, methods=["POST"]),
        Route("/dead-letters/note", note, methods=["POST"]),
        Route("/dead-letters/{seq:int}", letter_page),
        Route("/dead-letters/{seq:int}/edit", edit, methods=["POST"]),
        Route("/replays/{replay_id}", replay_page),
        Route("/replays/{replay_id}/resume", resume, methods=["POST"]),
        Route("/audit", audit_page),
    ]


# --- filters -----------------------------------------------------------------------------------------


def filters_of(source) -> dict[str, str]:
    """The filter fields given (query string or form), each bounded."""
    return {name: str(source.get(name, "")).strip()[:MAX_FIELD_CHARS] for name in FILTER_FIELDS if source.get(name)}


def selection_of(filters: dict[str, str], now: float, seqs: tuple[int, ...] | None = None) -> Selection:
    """The archive's ``Selection`` for a filter; ``Refused`` (400) naming a field that does not read."""
    status = filters.get("status", "unhandled")
    if status not in STATUSES:
        raise Refused(400, f"status must be one of {', '.join(STATUSES)}")
    until = _date(filters, "until")
    if filters.get("older_than_days"):
        try:
            days = float(filters["older_than_days"])
        except ValueError:
            raise Refused(400, "older than: a number of days") from None
        if not 0 <= days <= 36_500:
            raise Refused(400, "older than: between 0 and 36,500 days")
        cutoff = now - days * DAY_S
        until = cutoff if until is None else min(until, cutoff)
    return Selection(
        route=filters.get("route"), error_type=filters.get("error_type"), message_type=filters.get("message_type"),
        key=filters.get("key"), text=filters.get("text"), since=_date(filters, "since"), until=until,
        seqs=seqs, status=status,
    )


def _date(filters: dict[str, str], name: str) -> float | None:
    value = filters.get(name)
    if not value:
        return None
    try:
        day = datetime.fromisoformat(value)
    except ValueError:
        raise Refused(400, f"{name}: a date such as 2026-12-01 or 2026-12-01T08:00") from None
    return (day if day.tzinfo else day.replace(tzinfo=CHINA_TZ)).timestamp()


def _seqs(form) -> tuple[int, ...]:
    try:
        return tuple(sorted({int(s) for s in form.getlist("seq")}))
    except ValueError:
        raise Refused(400, "a selected letter is not a letter number") from None


def _now(request: Request) -> float:
    return request.app.state.config.clock()


# --- reading -----------------------------------------------------------------------------------------


@page("viewer")
def groups_page(request: Request, account: Account) -> Response:
    filters = filters_of(request.query_params)
    store = request.app.state.store
    sort = request.query_params.get("sort", "count")
    sort = sort if sort in GROUP_SORTS else "count"
    descending = request.query_params.get("order", "desc" if sort in ("count", "last_seen") else "asc") == "desc"
    groups = sorted(store.dead_letters.groups(selection_of(filters, _now(request))),
                    key=lambda g: getattr(g, sort), reverse=descending)
    return render(request, "groups.html", account, groups=groups, filters=filters, sort=sort,
                  descending=descending, notes=_group_notes(store), query=_query)


def _group_notes(store) -> dict[tuple[str, str, str], str]:
    """The newest note of each group."""
    notes: dict[tuple[str, str, str], str] = {}
    for row in reversed(store.audit.rows(action="note", limit=1000)):
        s = row.selection or {}
        notes[(s.get("route"), s.get("error_type"), s.get("message_type"))] = f"{row.what} ({row.who})"
    return notes


def _query(filters: dict, **more) -> str:
    """A query string of ``filters`` with ``more`` over them (empty values left out)."""
    merged = {**filters, **{k: v for k, v in more.items()}}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


@page("viewer")
def letters_page(request: Request, account: Account) -> Response:
    filters = filters_of(request.query_params)
    store = request.app.state.store
    selection = selection_of(filters, _now(request))
    before = request.query_params.get("before")
    before = int(before) if (before or "").isdigit() else None
    letters = store.dead_letters.search(selection, limit=PAGE_SIZE, before=before)
    params = request.query_params
    done = {k: int(params[k]) for k in ("purged", "restored") if params.get(k, "").isdigit()}
    return render(request, "letters.html", account, letters=letters, filters=filters,
                  total=store.dead_letters.count(selection), query=_query, page_size=PAGE_SIZE,
                  replay_id=str(uuid.uuid4()), done=done)


@page("viewer")
def letter_page(request: Request, account: Account) -> Response:
    store = request.app.state.store
    letter = store.dead_letters.get(request.path_params["seq"])
    if letter is None:
        raise Refused(404, f"no dead letter {request.path_params['seq']} in the archive (removed after its purge?)")
    edited = request.query_params.get("edited", "")[:64] or None
    return render(request, "letter.html", account, v=view(letter), replays=store.replays.of_letter(letter.seq),
                  error=None, edited=edited, edit_text=None)


@page("viewer")
def replay_page(request: Request, account: Account) -> Response:
    replay_id = request.path_params["replay_id"][:64]
    progress = request.app.state.store.replays.progress(replay_id)
    if progress is None:
        raise Refused(404, f"no replay {replay_id}")
    replayer = request.app.state.replayer
    return render(request, "replay.html", account, p=progress, sending=replayer.is_sending(replay_id),
                  error=replayer.error(replay_id))


@page("viewer")
def audit_page(request: Request, account: Account) -> Response:
    action = request.query_params.get("action") or None
    action = action if action in ACTIONS else None
    rows = request.app.state.store.audit.rows(action=action, limit=200)
    return render(request, "audit.html", account, rows=rows, action=action, actions=ACTIONS)


# --- changes -----------------------------------------------------------------------------------------


@page("operator")
def replay(request: Request, account: Account, form) -> Response:
    filters = filters_of(form)
    seqs = _seqs(form) if form.get("scope") == "selected" else None
    if seqs == ():
        raise Refused(400, "no letter selected: tick some, or replay every letter of the filter")
    try:
        rate = float(form.get("rate") or 0)
    except ValueError:
        raise Refused(400, "rate: letters per second, a number (0: as fast as the broker confirms)") from None
    replay_id = str(form.get("replay_id") or "")
    try:
        uuid.UUID(replay_id)
    except ValueError:
        raise Refused(400, "the form has no replay id: reload the page") from None
    try:
        request.app.state.replayer.start(replay_id, selection_of(filters, _now(request), seqs), account.name, rate)
    except ReplayRefused as exc:
        raise Refused(400, str(exc)) from None
    return RedirectResponse(f"/replays/{replay_id}", status_code=303)


@page("operator")
def resume(request: Request, account: Account, form) -> Response:
    replay_id = request.path_params["replay_id"][:64]
    request.app.state.replayer.resume(replay_id, account.name)
    return RedirectResponse(f"/replays/{replay_id}", status_code=303)


@page("operator")
def edit(request: Request, account: Account, form) -> Response:
    store = request.app.state.store
    letter = store.dead_letters.get(request.path_params["seq"])
    if letter is None:
        raise Refused(404, f"no dead letter {request.path_params['seq']} in the archive")
    text = str(form.get("body", "")).replace("\r\n", "\n")
    codec = view(letter).codec
    if codec is None:
        raise Refused(400, f"letter {letter.seq}'s body is not text gridbus decodes: it cannot be edited here")
    try:
        body = text.encode(codec)
    except UnicodeEncodeError as exc:
        return _edit_refused(request, account, letter, text, f"the edited body has {exc.object[exc.start]!r}, "
                             f"which its declared encoding {codec} cannot hold")
    try:
        new_id = request.app.state.replayer.edit_and_replay(letter, body, account.name)
    except ReplayRefused as exc:
        return _edit_refused(request, account, letter, text, str(exc))
    return RedirectResponse(f"/dead-letters/{letter.seq}?{urlencode({'edited': new_id})}", status_code=303)


def _edit_refused(request: Request, account: Account, letter, text: str, reason: str) -> Response:
    store = request.app.state.store
    return render(request, "letter.html", account, v=view(letter), replays=store.replays.of_letter(letter.seq),
                  edited=None, status=422,
                  error=f"not sent: {reason}", edit_text=edit_box(text) or Lines(text))


@page("operator")
def note(request: Request, account: Account, form) -> Response:
    group = {k: str(form.get(k, ""))[:MAX_FIELD_CHARS] for k in ("route", "error_type", "message_type")}
    text = " ".join(str(form.get("note", "")).split())[:MAX_NOTE_CHARS]
    if not text:
        raise Refused(400, "the note is empty")
    request.app.state.store.audit.append(AuditEntry(_now(request), account.name, "note", text, 0, group))
    return RedirectResponse(f"/dead-letters?{_query(filters_of(form))}", status_code=303)


@page("admin")
def purge(request: Request, account: Account, form) -> Response:
    filters = filters_of(form)
    seqs = _seqs(form) if form.get("scope") == "selected" else None
    if seqs == ():
        raise Refused(400, "no letter selected: tick some, or purge every letter of the filter")
    selection = selection_of(filters, _now(request), seqs)
    store = request.app.state.store
    if form.get("confirm") != "yes":
        return render(request, "confirm_purge.html", account, count=store.dead_letters.count(selection),
                      filters=filters, seqs=seqs or (), scope=form.get("scope", "all"), selection=selection.as_dict())
    count = store.dead_letters.soft_delete(selection, account.name, _now(request))
    return RedirectResponse(f"/dead-letters/letters?{_query(filters, status='deleted', purged=count)}", status_code=303)


@page("admin")
def restore(request: Request, account: Account, form) -> Response:
    filters = filters_of(form)
    seqs = _seqs(form) if form.get("scope") == "selected" else None
    selection = selection_of({**filters, "status": "deleted"}, _now(request), seqs or None)
    count = request.app.state.store.dead_letters.restore(selection, account.name, _now(request))
    query = _query(filters, status="unhandled", restored=count)
    return RedirectResponse(f"/dead-letters/letters?{query}", status_code=303)
