"""Flow 10 end to end: both platforms publishing as their own RabbitMQ users, the real broker, the
worker, and what arrives in the senders' inboxes (the replies) and in the data middle platform's
(``dmp.in.inbox``); refusals shown by ``gridbus trace``."""

from __future__ import annotations

from dataclasses import replace

import pytest
from click.testing import CliRunner
from lxml import etree

from gridbus.contracts.canonical.envelope import NAMESPACE as MESSAGE_NS
from gridbus.routes.master_data import MKT_MASTER_DATA_CHANGED, PMS_MASTER_DATA_CHANGED
from gridbus.routes.model import RetryPolicy
from gridbus.tools.cli import main as cli
from tests.support.amqp import UpstreamSystem, dead_letter_reader, inbox_reader, running_worker, wait_for
from tests.support.master_data import body, code

pytestmark = pytest.mark.broker

FAST = RetryPolicy(attempts=4, first_delay_s=0.3, max_delay_s=0.6)
ROUTES = {r.source.system: replace(r, retry=FAST) for r in (PMS_MASTER_DATA_CHANGED, MKT_MASTER_DATA_CHANGED)}
M = {"m": MESSAGE_NS}


@pytest.fixture
def systems(vhost, system_users):
    opened = {s: UpstreamSystem(vhost, *system_users[s]) for s in ("pms", "mkt")}
    yield opened
    for system in opened.values():
        system.close()


@pytest.fixture
def inboxes(broker_url):
    return {s: inbox_reader(broker_url, s) for s in ("pms", "mkt", "dmp")}


@pytest.fixture
def worker(broker_url, store):
    with running_worker(tuple(ROUTES.values()), broker_url, store) as w:
        yield w


def send(systems, system: str, *args, message_id: str | None = None, **kwargs) -> str:
    route = ROUTES[system]
    return systems[system].publish(
        route.source.exchange, route.source.routing_key, body(system, *args, **kwargs), message_id=message_id,
        message_type=route.contract.message_type,
        content_type="application/xml" if system == "pms" else "application/json",
    )


def settled(worker, n: int, what: str) -> None:
    wait_for(lambda: sum(worker.counts.values()) >= n, what=what)


def replies(inboxes, system: str, message_id: str) -> list:
    """The replies in ``system``'s inbox to message ``message_id`` (their 61968-100 CorrelationID), parsed."""
    found = inboxes[system].where(lambda m: m.properties.get("type") == "ResponseMessage")
    parsed = [etree.fromstring(m.body) for m in found]
    return [r for r in parsed if r.findtext("m:Header/m:CorrelationID", namespaces=M) == message_id]


def reply_to(inboxes, system: str, message_id: str):
    return wait_for(lambda: replies(inboxes, system, message_id), what=f"reply to {message_id}")[0]


def data_platform(inboxes, business_code: str) -> list:
    return [etree.fromstring(m.body) for m in inboxes["dmp"].drain() if business_code.encode() in m.body]


def result(reply) -> tuple:
    error = reply.find("m:Reply/m:Error", M)
    return (reply.findtext("m:Reply/m:Result", namespaces=M),
            None if error is None else error.findtext("m:code", namespaces=M))


def test_an_accepted_change_is_answered_and_reaches_the_data_platform(systems, inboxes, worker):
    c = code("PTR")
    message_id = send(systems, "pms", "transformer", c, use="public", fields={"Name": "城东1号公变"})
    reply = reply_to(inboxes, "pms", message_id)
    assert result(reply) == ("OK", None)
    assert reply.findtext("m:Header/m:Noun", namespaces=M) == "PowerTransformer"
    [dmp] = wait_for(lambda: data_platform(inboxes, c), what="dmp message")
    assert dmp.findtext("m:Header/m:Verb", namespaces=M) == "created"
    assert dmp.findtext("m:Header/m:Noun", namespaces=M) == "PowerTransformer"
    assert "城东1号公变" in etree.tostring(dmp, encoding="unicode")
    assert not replies(inboxes, "mkt", message_id)


def test_a_change_from_the_wrong_system_is_refused_in_its_inbox_and_traced(systems, inboxes, worker, store):
    c = code("SUB")
    message_id = send(systems, "mkt", "substation", c)
    reply = reply_to(inboxes, "mkt", message_id)
    assert result(reply) == ("FAILED", "not-system-of-record")
    error = reply.find("m:Reply/m:Error", M)
    assert error.findtext("m:level", namespaces=M) == "FATAL"
    assert "mkt.master-data-changed" in error.findtext("m:reason", namespaces=M)
    ident = error.find("m:ID", M)
    assert (ident.text, ident.get("idAuthority")) == (c, "pms")
    settled(worker, 1, "the refusal settled")
    assert worker.counts == {"delivered": 1}  # a business outcome, not a dead letter
    assert data_platform(inboxes, c) == []
    traced = CliRunner().invoke(cli, ["trace", c, "--store", store.url])
    assert traced.exit_code == 0, traced.output
    assert "refused: not-system-of-record" in traced.output and "master-data.reply" in traced.output


def test_transformer_write_rights_from_both_platforms(systems, inboxes, worker):
    public, dedicated = code("PTR"), code("PTR")
    outcomes = [
        ("mkt", send(systems, "mkt", "transformer", public, use="public"), ("FAILED", "write-not-permitted")),
        ("pms", send(systems, "pms", "transformer", dedicated, use="dedicated"), ("FAILED", "write-not-permitted")),
    ]
    settled(worker, 2, "two refusals")
    outcomes.append(("pms", send(systems, "pms", "transformer", public, use="public"), ("OK", None)))
    settled(worker, 3, "the public transformer")
    outcomes += [
        ("mkt", send(systems, "mkt", "transformer", public, operation="change", revision=2, use="dedicated"),
         ("FAILED", "use-change-not-permitted")),
    ]
    settled(worker, 4, "public to dedicated from mkt")
    outcomes.append(("pms", send(systems, "pms", "transformer", public, operation="change", revision=2,
                                 use="dedicated"), ("OK", None)))
    for system, message_id, expected in outcomes:
        assert result(reply_to(inboxes, system, message_id)) == expected, (system, expected)
    verbs = lambda: [m.findtext("m:Header/m:Verb", namespaces=M) for m in data_platform(inboxes, public)]  # noqa: E731
    assert wait_for(lambda: len(verbs()) == 2 and verbs(), what="two dmp messages") == ["created", "changed"]
    assert data_platform(inboxes, dedicated) == []


def test_a_business_code_conflict_and_a_stale_revision_are_refused(systems, inboxes, worker):
    c = code("BC")
    first = send(systems, "pms", "line", c, revision=5)
    settled(worker, 1, "the line")
    conflict = send(systems, "mkt", "customer", c)
    stale = send(systems, "pms", "line", c, operation="change", revision=4, fields={"Name": ("a", "b")})
    assert result(reply_to(inboxes, "pms", first)) == ("OK", None)
    assert result(reply_to(inboxes, "mkt", conflict)) == ("FAILED", "business-code-conflict")
    assert result(reply_to(inboxes, "pms", stale)) == ("FAILED", "superseded")
    assert len(wait_for(lambda: data_platform(inboxes, c), what="dmp")) == 1


def test_a_relation_waits_for_its_end_and_is_accepted_once_it_arrives(systems, inboxes, worker, broker_url):
    substation, line, relation = code("SUB"), code("LN"), code("REL")
    send(systems, "pms", "substation", substation)
    settled(worker, 1, "the substation")
    waiting = send(systems, "pms", "substation-line", relation, ends=(substation, line))
    wait_for(lambda: worker.counts.get("retry-scheduled", 0) >= 1, what="the relation waiting")
    assert not replies(inboxes, "pms", waiting)
    send(systems, "pms", "line", line)
    assert result(reply_to(inboxes, "pms", waiting)) == ("OK", None)
    assert len(wait_for(lambda: data_platform(inboxes, relation), what="the relation at dmp")) == 1


def test_a_relation_whose_end_never_comes_is_dead_lettered_unknown_reference(systems, inboxes, worker, broker_url):
    relation, missing = code("REL"), code("MB")
    meter = code("MTR")
    send(systems, "mkt", "meter", meter)
    message_id = send(systems, "mkt", "meter-meter-box", relation, ends=(meter, missing))
    letters = dead_letter_reader(broker_url, ROUTES["mkt"])
    [letter] = wait_for(lambda: [m for m in letters.drain() if m.properties["message_id"] == message_id],
                        what="the dead letter")
    assert letter.headers["x-gridbus-error-type"] == "unknown-reference"
    assert missing in letter.headers["x-gridbus-error"] and "after 4 attempts" in letter.headers["x-gridbus-error"]
    assert not replies(inboxes, "mkt", message_id) and data_platform(inboxes, relation) == []


def test_a_gbk_change_keeps_its_chinese_to_the_data_platform(systems, inboxes, worker):
    c = code("SUB")
    message_id = send(systems, "pms", "substation", c, fields={"Name": "城东110kV第一变电站"}, encoding="GBK")
    assert result(reply_to(inboxes, "pms", message_id)) == ("OK", None)
    [dmp] = wait_for(lambda: data_platform(inboxes, c), what="dmp message")
    assert "城东110kV第一变电站" in etree.tostring(dmp, encoding="unicode")


def test_a_repeated_message_is_answered_and_forwarded_once(systems, inboxes, worker):
    c = code("MTR")
    message_id = send(systems, "mkt", "meter", c)
    send(systems, "mkt", "meter", c, message_id=message_id)
    settled(worker, 2, "both copies")
    assert worker.counts == {"delivered": 1, "duplicate": 1}
    assert len(wait_for(lambda: replies(inboxes, "mkt", message_id), what="reply")) == 1
    assert len(data_platform(inboxes, c)) == 1


def test_competing_workers_on_one_postgresql_registry_give_each_code_one_object(
    systems, inboxes, broker_url, pg_schema_url
):
    """Both platforms claim the same codes at once, for two object types, to two workers sharing the
    registry: each code ends up held once, the other claim refused, one message per code at dmp."""
    from gridbus.workers.store import Store

    codes = [code("BC") for _ in range(15)]
    stores = [Store(pg_schema_url) for _ in range(2)]
    try:
        with running_worker(tuple(ROUTES.values()), broker_url, stores[0]) as first, \
                running_worker(tuple(ROUTES.values()), broker_url, stores[1]) as second:
            sent = []
            for c in codes:
                sent.append(("pms", send(systems, "pms", "substation", c)))
                sent.append(("mkt", send(systems, "mkt", "customer", c)))
            wait_for(lambda: sum(w.counts.get("delivered", 0) for w in (first, second)) >= len(sent),
                     timeout=60, what="every claim decided")
        results = {}
        for system, message_id in sent:
            results.setdefault(system, []).append(result(reply_to(inboxes, system, message_id)))
        outcomes = sorted(r for rs in results.values() for r in rs)
        assert outcomes == [("FAILED", "business-code-conflict")] * 15 + [("OK", None)] * 15
        dmp = inboxes["dmp"].drain()
        for c in codes:
            assert sum(c.encode() in m.body for m in dmp) == 1, c
        assert {r.data["object_type"] for r in stores[0].state.find_records("business-code") if r.key in codes} <= {
            "substation", "customer"}
    finally:
        for s in stores:
            s.close()
