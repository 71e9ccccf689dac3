"""Hostile envelopes against a real worker process on the real RabbitMQ.

Everything a publisher controls is untrusted, headers included: wrong-type counters, forged
gridbus history, oversized quoted values and oversized header tables must each end where they
should (delivered, or dead-lettered with gridbus's own bounded reason), and the worker must stay
up (one process, never restarted) and keep delivering the valid messages right behind them.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from pathlib import Path

import amqp
import pytest

from gridbus import contracts
from gridbus.routes.model import Route, Source, Step, Target
from tests.support.amqp import UpstreamSystem, running_worker, shared_channel, body_json, dead_letter_reader, declare_routes, inbox_reader, wait_for
from tests.support.processes import WorkerProcess
from tests.support.routes import AMQP_ONLY_NOTES, Note, note_out, ENVELOPE_ROUTES, FAST_RETRY, JSON_REFUSALS, XML_REFUSALS, note_body
from gridbus.tools import dlq as dlq_tools
from gridbus.workers import headers as H
from gridbus.contracts.errors import HIDDEN_CATEGORIES, MAX_REASON_BYTES

pytestmark = pytest.mark.broker

ROUTES_MODULE = "tests.support.routes:ENVELOPE_ROUTES"
EXAMPLE = (Path(contracts.__file__).parent / "examples" / "pms.BlackMapPublished.xml").read_bytes()


@pytest.fixture
def pms(broker_url, vhost, system_users):
    declare_routes(broker_url, ENVELOPE_ROUTES)
    system = UpstreamSystem(vhost, *system_users["pms"])
    yield system
    system.close()


@pytest.fixture
def mkt(broker_url, vhost, system_users):
    system = UpstreamSystem(vhost, *system_users["mkt"])
    yield system
    system.close()


@pytest.fixture
def worker(broker_url, tmp_path):
    process = WorkerProcess(broker_url, f"sqlite:///{tmp_path}/store.sqlite3", ROUTES_MODULE, tmp_path)
    yield process
    process.close()


def note(pms, key, text="hello", *, body=None, **kwargs):
    return pms.publish("pms.out", "note.amqp", body or note_body(key, text), message_type="Note", **kwargs)


def supply_plan(mkt, body: bytes):
    return mkt.publish("mkt.out", "supply-plan.test", body, message_type="SupplyPlanPushed")


def black_map(pms, body: bytes, **kwargs):
    return pms.publish(
        "pms.out", "black-map.test", body, message_type="BlackMapPublished", content_type="application/xml", **kwargs
    )


def delivered(inbox, key) -> set[str]:
    return {m.properties["correlation_id"] for m in inbox.where(lambda m: body_json(m)["key"] == key)}


def letters(dlq, ids) -> dict:
    return {m.properties["message_id"]: m for m in dlq.drain() if m.properties.get("message_id") in ids}


def assert_bounded(reason: str) -> None:
    assert len(reason.encode("utf-8")) <= MAX_REASON_BYTES
    # one line, nothing a terminal would act on
    assert not any(c in "\n\r\t" or unicodedata.category(c) in HIDDEN_CATEGORIES for c in reason), reason[:200]


def assert_still_the_first_process(worker) -> None:
    logs = worker.logs()
    assert worker.alive() and worker.runs == 1 and worker.exit_codes == [], logs[-3000:]
    assert "broker.connection_lost" not in logs, logs[-3000:]


def test_wrong_type_counters_never_crash_the_worker(broker_url, worker, pms):
    key = uuid.uuid4().hex
    inbox, dlq = inbox_reader(broker_url), dead_letter_reader(broker_url, AMQP_ONLY_NOTES)
    worker.start()
    wrong_version = note_body(key, "v2", version="2")
    valid_attempt = note(pms, key, "a", headers={H.ATTEMPT: "abc"})
    invalid_attempt = note(pms, key, body=wrong_version, headers={H.ATTEMPT: "abc"})
    valid_count = note(pms, key, "c", headers={H.DELIVERY_COUNT: "abc"})
    invalid_count = note(pms, key, body=wrong_version, headers={H.DELIVERY_COUNT: "abc"})
    after = note(pms, key, "after")
    wait_for(lambda: delivered(inbox, key) >= {valid_attempt, after}, what="the valid notes delivered")
    dead = wait_for(
        lambda: (found := letters(dlq, {invalid_attempt, valid_count, invalid_count})) and len(found) == 3 and found,
        what="the other notes dead-lettered",
    )
    assert valid_attempt in delivered(inbox, key)  # its x-gridbus-attempt was the publisher's: dropped unread
    assert "version '2' is not supported" in dead[invalid_attempt].headers[H.ERROR_MESSAGE]
    for message_id in (valid_count, invalid_count):  # not the broker's counter: the envelope is refused
        assert dead[message_id].headers[H.ERROR_MESSAGE] == (
            "header x-delivery-count must be a whole number from 0 to 2147483647, got 'abc'"
        )
    for letter in dead.values():
        assert letter.headers[H.ERROR_TYPE] == "contract-violation"
        assert letter.headers[H.ATTEMPT] == 1
    # The publisher's counter was never read, and the dead letter says it was not trusted.
    assert dead[invalid_attempt].headers[H.UNTRUSTED_DROPPED] == H.ATTEMPT
    assert_still_the_first_process(worker)


def test_forged_history_is_dropped_and_the_whole_retry_budget_is_used(broker_url, worker, pms):
    key = uuid.uuid4().hex
    dlq = dead_letter_reader(broker_url, AMQP_ONLY_NOTES)
    forged = {H.ATTEMPT: 99, H.FIRST_FAILURE_AT: "1999-01-01T00:00:00+08:00", H.REPLAYED: 7, H.DUE_AT: 1,
              H.ERROR_TYPE: "forged", H.ERROR_MESSAGE: "forged reason"}
    worker.start()
    # "outage" makes the note's step fail transiently on every attempt, as a target that is down.
    high = note(pms, key, "outage", headers=forged)
    zero = note(pms, key, "outage", headers={**forged, H.ATTEMPT: 0})
    dead = wait_for(lambda: (found := letters(dlq, {high, zero})) and len(found) == 2 and found, timeout=40,
                    what="both notes dead-lettered after their retries")
    for letter in dead.values():
        assert letter.headers[H.ERROR_TYPE] == "retries-exhausted", letter.headers
        assert letter.headers[H.ATTEMPT] == FAST_RETRY.attempts
        assert f"gave up after {FAST_RETRY.attempts} attempts" in letter.headers[H.ERROR_MESSAGE]
        assert not letter.headers[H.ERROR_MESSAGE].endswith("will retry")
        assert letter.headers[H.FIRST_FAILURE_AT] != forged[H.FIRST_FAILURE_AT]
        assert H.REPLAYED not in letter.headers
        assert letter.headers[H.SOURCE_USER] == pms.user  # the broker-validated user_id, not a header
    assert_still_the_first_process(worker)


def test_a_forged_source_user_is_refused_and_stays_refused_after_a_replay(broker_url, worker, pms):
    key = uuid.uuid4().hex
    dlq = dead_letter_reader(broker_url, AMQP_ONLY_NOTES)
    worker.start()
    forged = note(pms, key, "forged", user_id=None, headers={H.SOURCE_USER: "pms"})
    first = wait_for(lambda: letters(dlq, {forged}).get(forged), what="the forged note dead-lettered")
    assert first.headers[H.ERROR_TYPE] == "unauthorised"
    assert H.SOURCE_USER not in first.headers
    assert H.SOURCE_USER in first.headers[H.UNTRUSTED_DROPPED]
    # Back into the dead-letter queue for the replay tool to find (the reader took it off).
    dlq.messages.clear()
    with shared_channel(broker_url) as channel:
        channel.basic_publish(
            amqp.Message(first.body, application_headers=dict(first.headers),
                         **{k: v for k, v in first.properties.items() if k != "application_headers"}),
            exchange="", routing_key=AMQP_ONLY_NOTES.dead_letter_queue,
        )
    result = dlq_tools.replay(broker_url, [AMQP_ONLY_NOTES], ids=[forged])
    assert result.replayed == [(AMQP_ONLY_NOTES.name, forged)]
    again = wait_for(lambda: letters(dlq, {forged}).get(forged), what="the replayed copy dead-lettered again")
    assert again.headers[H.ERROR_TYPE] == "unauthorised"
    assert again.headers[H.REPLAYED] == 1
    assert_still_the_first_process(worker)


def _namespace_of(size: int) -> bytes:
    return b"urn:" + b"x" * size


def test_oversized_quotes_and_headers_are_dead_lettered_in_one_frame(broker_url, worker, pms, mkt):
    key = uuid.uuid4().hex
    inbox = inbox_reader(broker_url)
    notes_dlq, xml_dlq = dead_letter_reader(broker_url, AMQP_ONLY_NOTES), dead_letter_reader(broker_url, XML_REFUSALS)
    json_dlq = dead_letter_reader(broker_url, JSON_REFUSALS)
    huge = "v" * 900_000
    worker.start()
    valid = []
    version = supply_plan(mkt, json.dumps({"schema_version": huge, "application_no": key}).encode())
    valid.append(note(pms, key, "after version"))
    half = huge[:450_000]  # twice, within the body limit
    duplicate = supply_plan(mkt, ('{"schema_version": "1", "%s": 1, "%s": 2}' % (half, half)).encode())
    valid.append(note(pms, key, "after duplicate"))
    namespace = black_map(pms, b'<?xml version="1.0" encoding="UTF-8"?><BlackMapPublished xmlns="'
                          + _namespace_of(900_000) + b'"/>')
    valid.append(note(pms, key, "after namespace"))
    # libxml2 quotes values in its messages: an undefined entity's name, a value its schema refuses
    entity = black_map(pms, b'<BlackMapPublished xmlns="urn:gridbus:pms:black-map:1">&' + b"q" * 40_000
                       + b";</BlackMapPublished>")
    valid.append(note(pms, key, "after entity"))
    quoted = black_map(pms, EXAMPLE.replace(b"<GraphVersion>3<", b"<GraphVersion>" + b"9q" * 50_000 + b"<"))
    valid.append(note(pms, key, "after quoted value"))
    headers = note(pms, key, "big headers", headers={"x-junk": "h" * 128_000})
    valid.append(note(pms, key, "after headers"))
    wait_for(lambda: delivered(inbox, key) >= set(valid), timeout=15, what="every valid note delivered at once")
    dead = wait_for(lambda: (found := letters(json_dlq, {version, duplicate})) and len(found) == 2 and found,
                    what="the JSON refusals dead-lettered")
    dead |= wait_for(lambda: letters(notes_dlq, {headers}), what="the note with oversized headers dead-lettered")
    dead |= wait_for(lambda: (found := letters(xml_dlq, {namespace, entity, quoted})) and len(found) == 3 and found,
                     what="the XML refusals dead-lettered")
    for message_id, letter in dead.items():
        reason = letter.headers[H.ERROR_MESSAGE]
        assert letter.headers[H.ERROR_TYPE] == "contract-violation", (message_id, reason)
        assert_bounded(reason)
        assert "XML_PARSE_HUGE" not in reason and "set_int_max_str_digits" not in reason
    assert "schema_version 'vvvv" in dead[version].headers[H.ERROR_MESSAGE]
    assert "(900000 characters)" in dead[version].headers[H.ERROR_MESSAGE]
    assert "duplicate key 'vvvv" in dead[duplicate].headers[H.ERROR_MESSAGE]
    assert "got '{urn:xxxx" in dead[namespace].headers[H.ERROR_MESSAGE]
    assert "Entity 'qqqq" in dead[entity].headers[H.ERROR_MESSAGE]
    assert "GraphVersion" in dead[quoted].headers[H.ERROR_MESSAGE]
    assert "9q9q" in dead[quoted].headers[H.ERROR_MESSAGE] and "bytes cut" in dead[quoted].headers[H.ERROR_MESSAGE]
    big = dead[headers]
    assert "application headers of" in big.headers[H.ERROR_MESSAGE]
    assert "x-junk" not in big.headers and "x-junk (" in big.headers[H.HEADERS_DROPPED]
    assert big.body == note_body(key, "big headers")
    assert_still_the_first_process(worker)


class ConnectionBreaker:
    """An AMQP-style target whose every send writes bytes that are no AMQP frame onto the
    worker's publishing connection: RabbitMQ closes the connection, as it does on FRAME_ERROR."""

    def __init__(self):
        self.worker = None
        self.sends = 0

    def send(self, operation, output, context) -> int:
        self.sends += 1
        publisher = self.worker.publisher()
        publisher.connection.connection.transport.write(b"\x09\x00\x00garbage\xce")
        return publisher.publish(exchange="", routing_key="nowhere", body=b"", properties={})

    def close(self) -> None:
        pass


BREAKS_CONNECTION = Route(
    name="test.breaks-connection",
    source=Source(system="pms", routing_key="note.breaks"),
    contract=Note,
    steps=(Step("break", note_out, Target("breaker", "x")),),
    retry=FAST_RETRY,
    max_crashes=2,
)


def test_a_message_that_breaks_the_connection_is_dead_lettered_with_the_cause(broker_url, store, pms):
    key = uuid.uuid4().hex
    breaker = ConnectionBreaker()
    dlq = dead_letter_reader(broker_url, BREAKS_CONNECTION)
    with running_worker([BREAKS_CONNECTION, AMQP_ONLY_NOTES], broker_url, store, {"breaker": breaker}) as worker:
        breaker.worker = worker
        inbox = inbox_reader(broker_url)
        breaking = pms.publish("pms.out", "note.breaks", note_body(key, "b"), message_type="Note")
        after = note(pms, key, "after")
        dead = wait_for(lambda: letters(dlq, {breaking}).get(breaking), timeout=40, what="the breaking note dead-lettered")
        wait_for(lambda: after in delivered(inbox, key), what="the next note delivered")
    assert dead.headers[H.ERROR_TYPE] == "poison"
    reason = dead.headers[H.ERROR_MESSAGE]
    assert "breaks its connection" in reason and "failed while it was in hand" in reason, reason
    assert_bounded(reason)
    assert breaker.sends == BREAKS_CONNECTION.max_crashes  # the loop ended: no further attempt
