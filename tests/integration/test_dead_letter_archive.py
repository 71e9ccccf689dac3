"""The dead-letter archive, its replays and its audit trail, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from gridbus.workers.store import Store
from gridbus.workers.store import values
from gridbus.workers.store.dead_letters import NewLetter, Selection, letter_id


@pytest.fixture(params=["sqlite", "postgresql"])
def archive(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite3"
    else:
        url = request.getfixturevalue("pg_schema_url")
    s = Store(url)
    yield s
    s.close()


def letter(n: int, *, route="tc.agreement", error_type="contract-violation", at=1_000.0, keys=("HV1",),
           reason="element Amount: not a decimal", body=None, message_type="tc.TripartiteAgreementSigned") -> NewLetter:
    headers = {"x-gridbus-route": route, "x-gridbus-attempt": 1, "n": n, "raw": b"\x00\xff",
               "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "amount": Decimal("1.50")}
    properties = {"message_id": f"m{n}", "type": message_type, "content_type": "application/xml"}
    body = body if body is not None else f"<a n='{n}'>户号</a>".encode("gb18030")
    return NewLetter(
        letter_id=letter_id(f"{route}.dlq", properties, headers, body), route=route, queue=f"{route}.dlq",
        message_id=f"m{n}", message_type=message_type, error_type=error_type, reason=reason,
        first_failure_at=at - 5, last_failure_at=at, dead_lettered_at=at, attempts=1, business_keys=tuple(keys),
        properties=properties, headers=headers, body=body,
    )


def test_a_letter_is_archived_once_with_its_bytes_and_typed_headers(archive):
    dl = archive.dead_letters
    first = letter(1)
    assert dl.ingest([first, letter(2)], at=2_000.0) == 2
    redelivered = {**first.headers, "x-delivery-count": 1}  # the broker's count is no part of the letter
    assert letter_id(first.queue, first.properties, redelivered, first.body) == first.letter_id
    assert dl.ingest([first], at=2_001.0) == 0
    [summary] = dl.search(Selection(message_id="m1"))
    shown = dl.get(summary.seq)
    assert shown.body == first.body and shown.headers == first.headers and shown.properties == first.properties
    assert shown.business_keys == ("HV1",) and shown.status == "unhandled" and shown.archived_at == 2_000.0


def test_groups_search_and_keys(archive):
    dl = archive.dead_letters
    dl.ingest([letter(i, at=1_000.0 + i) for i in range(5)], at=2_000.0)
    dl.ingest([letter(i, route="mkt.plan", error_type="mapping-error", keys=(f"K{i}",), reason="no PLAN_ID 计划",
                      at=1_100.0 + i) for i in range(10, 13)], at=2_000.0)
    groups = dl.groups()
    assert [(g.route, g.error_type, g.count, g.first_seen, g.last_seen) for g in groups] == [
        ("tc.agreement", "contract-violation", 5, 1_000.0, 1_004.0),
        ("mkt.plan", "mapping-error", 3, 1_110.0, 1_112.0),
    ]
    assert [s.message_id for s in dl.search(Selection(key="K11"))] == ["m11"]
    assert [s.message_id for s in dl.search(Selection(text="plan_id 计划"))] == ["m12", "m11", "m10"]
    assert dl.search(Selection(text="%")) == []  # the operator's text is matched as it is, not as a pattern
    assert [s.message_id for s in dl.search(Selection(since=1_002.0, until=1_004.0))] == ["m3", "m2"]
    page = dl.search(limit=4)
    assert len(page) == 4 and [s.message_id for s in dl.search(limit=4, before=page[-1].seq)] == ["m3", "m2", "m1", "m0"]
    assert dl.count(Selection(route="mkt.plan")) == 3


def test_purge_restore_and_removal_are_audited(archive):
    dl = archive.dead_letters
    dl.ingest([letter(i, at=1_000.0 + i) for i in range(6)], at=2_000.0)
    assert dl.soft_delete(Selection(until=1_003.0), "alice", at=3_000.0) == 3
    assert dl.count() == 3 and dl.count(Selection(status="deleted")) == 3
    assert dl.restore(Selection(message_id="m1"), "bob", at=3_100.0) == 1
    assert dl.remove_expired(restorable_s=50.0, at=3_200.0) == 2  # m0 and m2, purged 200 s ago
    assert dl.count(Selection(status="any")) == 4
    assert dl.expire(retention_s=1_000.0, at=2_004.5) == 3  # dead-lettered before 1004.5 and not purged: m1, m3, m4
    rows = archive.audit.rows()
    assert [(r.action, r.who, r.count) for r in rows] == [
        ("purge", "retention", 3), ("remove", "retention", 2), ("restore", "bob", 1), ("purge", "alice", 3),
    ]
    assert rows[-1].selection == {"until": 1_003.0, "status": "unhandled"}


def test_audit_rows_cannot_be_changed_or_deleted(archive):
    archive.dead_letters.ingest([letter(1)], at=2_000.0)
    archive.dead_letters.soft_delete(Selection(), "alice", at=3_000.0)
    for statement in ("UPDATE audit SET who = 'mallory'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"):
            with archive.db.transaction() as cur:
                cur.execute(statement)
    assert [r.who for r in archive.audit.rows()] == ["alice"]


def test_a_replay_sends_each_letter_once_and_resumes(archive):
    dl, replays = archive.dead_letters, archive.replays
    dl.ingest([letter(i) for i in range(7)], at=2_000.0)
    started = replays.begin("r1", Selection(), "alice", rate=100, at=3_000.0)
    assert (started.total, started.sent) == (7, 0)
    first = replays.pending("r1", limit=3)
    replays.confirmed("r1", [x.seq for x in first], "alice", at=3_001.0)
    dl.ingest([letter(99)], at=3_002.0)  # arrives after the replay began: not part of it
    dl.soft_delete(Selection(message_id="m6"), "bob", at=3_003.0)
    resumed = replays.begin("r1", Selection(), "alice", rate=100, at=3_004.0)
    assert (resumed.total, resumed.sent, resumed.passed_over, resumed.left) == (7, 3, 1, 3)
    rest = replays.pending("r1")
    assert [x.message_id for x in rest] == ["m3", "m4", "m5"]
    replays.confirmed("r1", [x.seq for x in rest], "alice", at=3_005.0)
    replays.confirmed("r1", [x.seq for x in rest], "alice", at=3_006.0)  # confirmed twice: counted once
    assert replays.pending("r1") == [] and dl.count(Selection(status="replayed")) == 6
    assert {x.replays for x in dl.search(Selection(status="replayed"))} == {1}
    replays.finish("r1", at=3_007.0)
    assert replays.progress("r1").state == "done" and replays.unfinished() == []
    assert [(r.action, r.count, r.detail["replay_id"]) for r in archive.audit.rows(action="replay")] == [("replay", 7, "r1")]


def test_values_keep_their_types():
    table = {"b": b"\x00", "t": datetime(2026, 1, 1, tzinfo=timezone.utc), "d": Decimal("0.1"),
             "nested": [{"$bytes": "not a tag"}, {"x": [1, 2.5, None, True]}], "s": "中文"}
    assert values.loads(values.dumps(table)) == table


def test_retention_purges_removes_and_forgets_and_audits_its_settings(archive):
    from gridbus.tools.retention import DAY_S, Retention, RetentionSettings

    now = 100 * DAY_S
    archive.dead_letters.ingest([letter(1, at=now - 40 * DAY_S), letter(2, at=now - 5 * DAY_S)], at=now)
    archive.dead_letters.ingest([letter(3, at=now - 50 * DAY_S)], at=now)
    archive.dead_letters.soft_delete(Selection(message_id="m3"), "alice", at=now - 20 * DAY_S)
    archive.journal.append([(now - 400 * DAY_S, "HV1", "delivered", "r", "m0", ""), (now - DAY_S, "HV1", "delivered", "r", "m1", "")])
    retention = Retention(archive, RetentionSettings(archive_days=30, restore_days=14, journal_days=365),
                          clock=lambda: now, chunk=1)
    assert retention.record_settings() and not retention.record_settings()  # audited once per change
    assert retention.enforce() == {"purged": 1, "removed": 1, "journal": 1}
    assert [s.message_id for s in archive.dead_letters.search(Selection(status="any"))] == ["m2", "m1"]
    assert archive.dead_letters.get(archive.dead_letters.search(Selection(message_id="m1", status="any"))[0].seq).status == "deleted"
    assert [r[3] for r in archive.journal.trace("HV1")] == ["m1"]
    changed = Retention(archive, RetentionSettings(archive_days=60, restore_days=14, journal_days=365), clock=lambda: now)
    assert changed.record_settings()
    rows = archive.audit.rows(action="retention")
    assert rows[0].detail["before"]["archive_days"] == 30 and rows[0].detail["archive_days"] == 60


def test_the_cli_purges_restores_and_shows_the_audit_as_json(archive):
    import json

    from click.testing import CliRunner

    from gridbus.tools import dlq_cli

    archive.dead_letters.ingest([letter(i, at=1_000.0 + i, keys=(f"K{i}",)) for i in range(4)], at=2_000.0)
    url, runner = archive.url, CliRunner()
    listed = runner.invoke(dlq_cli.dlq, ["list", "--store", url, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(g["route"], g["count"]) for g in json.loads(listed.output)] == [("tc.agreement", 4)]
    found = runner.invoke(dlq_cli.dlq, ["search", "--store", url, "--key", "K2", "--json"])
    assert [s["message_id"] for s in json.loads(found.output)] == ["m2"]

    refused = runner.invoke(dlq_cli.dlq, ["purge", "--store", url, "--until", "1970-01-01T08:16:42"])
    assert refused.exit_code == 2 and "--yes" in refused.output and archive.dead_letters.count() == 4
    purged = runner.invoke(dlq_cli.dlq, ["purge", "--store", url, "--until", "1970-01-01T08:16:42", "--yes",
                                         "--operator", "alice", "--json"])
    assert json.loads(purged.output)["purged"] == 2 and archive.dead_letters.count() == 2  # m0, m1 (before 1002)
    restored = runner.invoke(dlq_cli.dlq, ["restore", "--store", url, "--id", "m1", "--operator", "bob"])
    assert restored.exit_code == 0 and "restored 1" in restored.output
    trail = runner.invoke(dlq_cli.audit, ["--store", url, "--json"])
    assert [(r["action"], r["who"], r["count"]) for r in json.loads(trail.output)] == [
        ("restore", "bob", 1), ("purge", "alice", 2)]
    shown = runner.invoke(dlq_cli.audit, ["--store", url])
    assert "purge" in shown.output and "alice" in shown.output
