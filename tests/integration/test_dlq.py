"""Dead-letter tools against the real RabbitMQ: nothing is consumed by looking, replay moves
exactly what matches and keeps the history, an interrupted replay loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import amqp
import pytest
from click.testing import CliRunner
from kombu import Connection

from gridbus.contracts import naming
from gridbus.routes.model import Route, Source, Step, Target
from gridbus.workers import topology
from gridbus.tools import dlq
from gridbus.workers import headers as H

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]


class BlackMapPublished:
    message_type = "BlackMapPublished"


class SupplyPlanPushed:
    message_type = "SupplyPlanPushed"


def _identity(message, context):
    return message


def make_routes(suffix: str) -> list[Route]:
    return [
        Route(
            name=f"pms.black-map-{suffix}",
            source=Source("pms", f"black-map-{suffix}.published"),
            contract=BlackMapPublished,
            steps=(Step("notify", _identity, Target("mkt", "black_map_notice")),),
        ),
        Route(
            name=f"mkt.supply-plan-{suffix}",
            source=Source("mkt", f"supply-plan-{suffix}.pushed"),
            contract=SupplyPlanPushed,
            steps=(Step("forward", _identity, Target("cmd", "SupplyPlan")),),
        ),
    ]


@pytest.fixture
def routes(broker_url):
    """Two routes of their own (unique names) declared in the session vhost, and their queues
    deleted afterwards: each quorum queue holds broker file handles, which the broker shares."""
    declared = make_routes(uuid.uuid4().hex[:8])
    with Connection(broker_url) as conn:
        topology.declare(conn.default_channel, topology.derive(declared))
    yield declared
    names = {declared_route.name for declared_route in declared}
    with Connection(broker_url) as conn:
        channel = conn.channel()
        for queue in topology.derive(declared).queues:
            if any(queue.name.startswith(naming.work_queue(name)) for name in names):
                channel.queue_delete(queue.name)


@pytest.fixture
def channel(broker_url):
    conn = amqp.Connection(**_amqp_params(broker_url))
    conn.connect()
    ch = conn.channel()
    ch.auto_decode = False
    ch.confirm_select()
    yield ch
    conn.close()


def _amqp_params(url: str) -> dict:
    info = Connection(url).info()
    return {
        "host": f"{info['hostname']}:{info['port']}",
        "userid": info["userid"],
        "password": info["password"],
        "virtual_host": info["virtual_host"],
    }


def dead_letter(ch, route: Route, *, error_type="contract-violation", body=b'{"a": 1}', headers=None, **props):
    """Publish a dead letter the way the runtime does: a copy to the dead-letter exchange."""
    message_id = props.pop("message_id", str(uuid.uuid4()))
    now = datetime.now(timezone.utc).isoformat()
    all_headers = {
        H.ERROR_TYPE: error_type,
        H.ERROR_MESSAGE: f"{error_type} in test",
        H.ROUTE: route.name,
        H.ATTEMPT: 3,
        H.FIRST_FAILURE_AT: now,
        H.LAST_FAILURE_AT: now,
        H.ORIGINAL_EXCHANGE: route.source.exchange,
        H.ORIGINAL_ROUTING_KEY: route.source.routing_key,
        H.DEAD_LETTERED_AT: now,
        H.SOURCE_USER: route.source.system,
        **(headers or {}),
    }
    properties = {
        "message_id": message_id,
        "correlation_id": f"corr-{message_id}",
        "type": route.contract.message_type,
        "content_type": "application/json",
        "delivery_mode": 2,
        "timestamp": 1_700_000_000,
        **props,
    }
    ch.basic_publish_confirm(
        amqp.Message(body, application_headers=all_headers, **properties),
        exchange=naming.DEAD_LETTER_EXCHANGE,
        routing_key=route.name,
        mandatory=True,
    )
    return message_id


def broker_dead_letter(ch, route: Route, *, requeue: bool = False, body=b"<x/>") -> str:
    """Let RabbitMQ itself dead-letter a message from the route's work queue: one reject without
    requeue (``rejected``), or rejects with requeue until the delivery limit is passed."""
    message_id = str(uuid.uuid4())
    ch.basic_publish_confirm(
        amqp.Message(body, message_id=message_id, user_id="guest", type=route.contract.message_type),
        exchange=naming.RETRY_EXCHANGE,
        routing_key=route.name,
        mandatory=True,
    )
    before = queue_count(ch, route.dead_letter_queue)
    deadline = time.monotonic() + 20
    while queue_count(ch, route.dead_letter_queue) == before:
        assert time.monotonic() < deadline, "the broker did not dead-letter the message"
        delivery = ch.basic_get(route.work_queue)
        if delivery is None:
            time.sleep(0.01)
            continue
        ch.basic_reject(delivery.delivery_tag, requeue=requeue)
    return message_id


def queue_count(ch, queue: str) -> int:
    return ch.queue_declare(queue, passive=True)[1]


def wait_for(condition, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in time")
        time.sleep(0.02)
    return value


def drain(ch, queue: str) -> list[amqp.Message]:
    taken = []
    while (delivery := ch.basic_get(queue)) is not None:
        ch.basic_ack(delivery.delivery_tag)
        taken.append(delivery)
    return taken


def ids_in(ch, queue: str) -> list[str]:
    """Message ids in ``queue`` without consuming them."""
    conn = ch.connection
    browse = conn.channel()
    try:
        ids = []
        while (delivery := browse.basic_get(queue)) is not None:
            ids.append(delivery.properties.get("message_id"))
        return ids
    finally:
        browse.close()


def archive_cli(runner, args, obj, broker_url, store_url, **kwargs):
    """Take the dead-letter queues into the archive at ``store_url``, then run ``gridbus dlq ARGS`` on it."""
    from gridbus.tools import dlq_cli

    ingested = runner.invoke(dlq_cli.dlq, ["ingest", "--once", "--broker", broker_url, "--store", store_url], obj=obj)
    assert ingested.exit_code == 0, ingested.output
    return runner.invoke(dlq_cli.dlq, [*args, "--store", store_url], obj=obj, **kwargs)


# --- list and show ---------------------------------------------------------------------------------


def test_list_counts_by_route_and_error_type_without_consuming(broker_url, routes, channel):
    pms, mkt = routes
    for _ in range(2):
        dead_letter(channel, pms, error_type="contract-violation")
    dead_letter(channel, pms, error_type="delivery-failed")
    dead_letter(channel, mkt, error_type="mapping-error")
    broker_dead_letter(channel, mkt)

    summaries = {s.route: s for s in dlq.list_dead_letters(broker_url, routes)}

    assert summaries[pms.name].total == 3
    assert summaries[pms.name].by_error_type == {"contract-violation": 2, "delivery-failed": 1}
    assert summaries[mkt.name].total == 2
    assert summaries[mkt.name].by_error_type == {"broker:rejected": 1, "mapping-error": 1}
    assert dlq.UNROUTED in summaries
    # Browsing handed everything back.
    assert queue_count(channel, pms.dead_letter_queue) == 3
    assert queue_count(channel, mkt.dead_letter_queue) == 2


def test_show_keeps_headers_and_body_bytes(broker_url, routes, channel):
    pms, _ = routes
    text_body = "<Notice>État: coupé</Notice>".encode("iso-8859-1")
    binary_body = bytes(range(256))
    text_id = dead_letter(
        channel, pms, body=text_body, content_type="application/xml; charset=iso-8859-1", headers={"custom": "kept"}
    )
    binary_id = dead_letter(channel, pms, body=binary_body, content_type="application/octet-stream")

    [text] = dlq.show(broker_url, routes, message_id=text_id)
    assert text.body == text_body
    # ISO 8859-1 is not among the charsets gridbus decodes: the bytes are shown, and why.
    assert text.body_text() == (
        "bytes",
        text_body,
        "declared encoding 'iso-8859-1' is not used to decode (only UTF-8, GBK, GB2312, GB18030)",
    )
    assert text.headers["custom"] == "kept"
    assert text.headers[H.ERROR_TYPE] == "contract-violation"
    assert text.properties["correlation_id"] == f"corr-{text_id}"
    assert text.properties["timestamp"] == 1_700_000_000
    assert text.error_type == "contract-violation"

    [binary] = dlq.show(broker_url, routes, message_id=binary_id)
    assert binary.body == binary_body
    encoding, shown, why = binary.body_text()
    assert encoding == "base64" and why == "not valid utf-8 (first bad byte at offset 128)"

    assert len(dlq.show(broker_url, routes, route=pms.name, limit=1)) == 1
    assert queue_count(channel, pms.dead_letter_queue) == 2


def test_show_interprets_the_brokers_delivery_limit(broker_url, routes, channel):
    pms, _ = routes
    message_id = broker_dead_letter(channel, pms, requeue=True)

    [letter] = dlq.show(broker_url, routes, message_id=message_id)

    assert letter.error_type == "broker:delivery_limit"
    [death] = letter.deaths
    assert death.queue == pms.work_queue
    assert death.reason == "delivery_limit"
    assert death.routing_keys == (pms.name,)
    assert "delivery_limit" in letter.error_message


# --- replay ----------------------------------------------------------------------------------------


def test_replay_by_id_moves_only_that_message_and_keeps_its_history(broker_url, routes, channel):
    pms, _ = routes
    body = bytes(range(256))
    target = dead_letter(channel, pms, body=body, content_encoding="binary", headers={H.REPLAYED: 1, "custom": "x"})
    others = [dead_letter(channel, pms) for _ in range(2)]
    [before] = dlq.show(broker_url, routes, message_id=target)

    result = dlq.replay(broker_url, routes, ids=[target])

    assert result.replayed == [(pms.name, target)]
    assert result.failed == [] and result.ids_not_found == []
    assert sorted(ids_in(channel, pms.dead_letter_queue)) == sorted(others)
    [copy] = drain(channel, pms.work_queue)
    assert copy.body == body
    assert copy.delivery_info["exchange"] == naming.RETRY_EXCHANGE
    props = {k: v for k, v in copy.properties.items() if k != "application_headers"}
    assert props == {k: v for k, v in before.properties.items() if k != "application_headers"}
    headers = copy.properties["application_headers"]
    assert headers[H.REPLAYED] == 2
    assert headers[H.ATTEMPT] == 1
    assert headers["custom"] == "x"
    for name in (H.ERROR_TYPE, H.ERROR_MESSAGE, H.FIRST_FAILURE_AT, H.LAST_FAILURE_AT, H.DEAD_LETTERED_AT):
        assert headers[name] == before.headers[name]
    assert H.X_DEATH not in headers
    assert headers[H.DELIVERY_COUNT] == 0  # set afresh by the work queue, not carried over from the DLQ


def test_replay_by_route_and_by_error_type(broker_url, routes, channel):
    pms, mkt = routes
    pms_ids = [dead_letter(channel, pms, error_type="delivery-failed") for _ in range(3)]
    mkt_failed = dead_letter(channel, mkt, error_type="delivery-failed")
    mkt_invalid = dead_letter(channel, mkt, error_type="contract-violation")

    by_route = dlq.replay(broker_url, routes, route=pms.name)
    assert sorted(i for _, i in by_route.replayed) == sorted(pms_ids)
    assert sorted(d.properties["message_id"] for d in drain(channel, pms.work_queue)) == sorted(pms_ids)
    assert queue_count(channel, mkt.dead_letter_queue) == 2

    by_type = dlq.replay(broker_url, routes, error_type="delivery-failed")
    assert by_type.replayed == [(mkt.name, mkt_failed)]
    assert by_type.left_in_dlq == 1
    assert ids_in(channel, mkt.dead_letter_queue) == [mkt_invalid]
    assert [d.properties["message_id"] for d in drain(channel, mkt.work_queue)] == [mkt_failed]


def test_replay_limit(broker_url, routes, channel):
    pms, _ = routes
    for _ in range(4):
        dead_letter(channel, pms)
    result = dlq.replay(broker_url, routes, route=pms.name, limit=3)
    assert len(result.replayed) == 3
    assert queue_count(channel, pms.dead_letter_queue) == 1
    assert len(drain(channel, pms.work_queue)) == 3


def test_replay_of_a_broker_dead_letter_drops_x_death_and_keeps_the_source_user(broker_url, routes, channel):
    pms, _ = routes
    message_id = broker_dead_letter(channel, pms)

    result = dlq.replay(broker_url, routes, error_type="broker:rejected")

    assert result.replayed == [(pms.name, message_id)]
    [copy] = drain(channel, pms.work_queue)
    headers = copy.properties["application_headers"]
    assert H.X_DEATH not in headers
    assert headers[H.DELIVERY_COUNT] == 0  # set afresh by the work queue, not carried over from the DLQ
    assert headers[H.SOURCE_USER] == "guest"
    assert "user_id" not in copy.properties
    assert headers[H.REPLAYED] == 1 and headers[H.ATTEMPT] == 1


def test_replay_refuses_unrouted_and_reports_unknown_ids(broker_url, routes):
    with pytest.raises(dlq.DlqError, match="cannot be replayed"):
        dlq.replay(broker_url, routes, route=dlq.UNROUTED)
    result = dlq.replay(broker_url, routes, ids=["no-such-id"])
    assert result.replayed == [] and result.ids_not_found == ["no-such-id"]
    with pytest.raises(dlq.DlqError, match="unknown route"):
        dlq.replay(broker_url, routes, route="no.such.route")


def test_replay_without_a_retry_binding_leaves_the_message_in_the_dlq(broker_url, routes, channel):
    pms, _ = routes
    message_id = dead_letter(channel, pms)
    channel.queue_unbind(pms.work_queue, naming.RETRY_EXCHANGE, pms.name)

    result = dlq.replay(broker_url, routes, route=pms.name)

    assert result.replayed == []
    assert [(r, i) for r, i, _ in result.failed] == [(pms.name, message_id)]
    assert ids_in(channel, pms.dead_letter_queue) == [message_id]


_CRASHING_REPLAY = """
import os, signal, sys
from tests.integration.test_dlq import make_routes
from gridbus.tools import dlq

published = []
def crash_after_three(letter):
    published.append(letter.message_id)
    if len(published) == 3:
        os.kill(os.getpid(), signal.SIGKILL)

dlq.replay(sys.argv[1], make_routes(sys.argv[2]), route=make_routes(sys.argv[2])[0].name,
           after_publish=crash_after_three)
"""


def test_replay_killed_halfway_loses_nothing(broker_url, channel):
    suffix = uuid.uuid4().hex[:8]
    routes = make_routes(suffix)
    with Connection(broker_url) as conn:
        topology.declare(conn.default_channel, topology.derive(routes))
    pms = routes[0]
    ids = {dead_letter(channel, pms) for _ in range(6)}

    done = subprocess.run(
        [sys.executable, "-c", _CRASHING_REPLAY, broker_url, suffix],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()

    # The broker requeues the unacked dead letters once it notices the connection is gone.
    # Two were replayed completely; the third was confirmed in the work queue but not yet acked.
    wait_for(lambda: queue_count(channel, pms.dead_letter_queue) == 4)
    in_dlq = set(ids_in(channel, pms.dead_letter_queue))
    in_work = set(ids_in(channel, pms.work_queue))
    assert in_dlq | in_work == ids
    assert len(in_work) == 3
    assert len(in_dlq & in_work) == 1  # in both: the route's idempotency drops the repeat


# --- purge and unrouted ----------------------------------------------------------------------------


def test_purge_needs_confirmation(broker_url, routes, channel):
    pms, _ = routes
    for _ in range(2):
        dead_letter(channel, pms)
    with pytest.raises(dlq.DlqError, match="refusing"):
        dlq.purge(broker_url, pms.name, confirm=False)
    assert queue_count(channel, pms.dead_letter_queue) == 2
    assert dlq.purge(broker_url, pms.name, confirm=True) == 2
    assert queue_count(channel, pms.dead_letter_queue) == 0


def test_unrouted_messages_are_listed_as_unroutable(fresh_broker_url):
    routes = make_routes("u")
    with Connection(fresh_broker_url) as conn:
        topology.declare(conn.default_channel, topology.derive(routes))
        ch = conn.connection.channel()
        ch.confirm_select()
        ch.basic_publish_confirm(
            amqp.Message(b"{}", message_id="lost-1"), exchange="pms.out", routing_key="nobody.listens", mandatory=True
        )
        wait_for(lambda: queue_count(ch, naming.UNROUTED_QUEUE) == 1)

    summaries = {s.route: s for s in dlq.list_dead_letters(fresh_broker_url, routes)}
    assert summaries[dlq.UNROUTED].total == 1
    assert summaries[dlq.UNROUTED].by_error_type == {"unroutable": 1}
    [letter] = dlq.show(fresh_broker_url, routes, route=dlq.UNROUTED)
    assert letter.message_id == "lost-1" and letter.error_type == "unroutable"


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_list_replay_and_purge(broker_url, routes, channel, tmp_path):
    pms, _ = routes
    message_id = dead_letter(channel, pms, error_type="delivery-failed")
    runner, store_url = CliRunner(), f"sqlite:///{tmp_path}/store.sqlite3"
    obj = {"routes": routes}

    def cli(*args):
        return archive_cli(runner, list(args), obj, broker_url, store_url)

    listed = cli("list")
    assert listed.exit_code == 0, listed.output
    assert pms.name in listed.output and "delivery-failed" in listed.output
    assert queue_count(channel, pms.dead_letter_queue) == 0  # in the archive now

    shown = cli("show", "--id", message_id)
    assert shown.exit_code == 0, shown.output
    assert message_id in shown.output and H.ERROR_TYPE in shown.output

    refused = cli("purge", "--route", pms.name)
    assert refused.exit_code == 2
    assert "--yes" in refused.output

    replayed = cli("replay", "--broker", broker_url, "--id", message_id)
    assert replayed.exit_code == 0, replayed.output
    assert queue_count(channel, pms.work_queue) == 1

    unrouted = cli("replay", "--broker", broker_url, "--route", dlq.UNROUTED)
    assert unrouted.exit_code != 0 and "cannot be replayed" in unrouted.output


# --- printed inert (issue 9, item 5) ---------------------------------------------------------------

#: A screen clear, a window title, a CSI in C1 form and a bidi override.
HOSTILE_BODY = b'{"note": "\x1b[2J\x1b]0;pwned\x07 \xc2\x9b31m \xe2\x80\xae evil"}'


def _inert(output: bytes) -> None:
    """No byte a terminal acts on: no C0 but line feeds and tabs (layout), no DEL, no C1, no bidi control."""
    text = output.decode("utf-8")
    assert [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F] == []
    assert not set(text) & {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"}


def test_show_and_list_print_escape_sequences_inert(broker_url, routes, channel, tmp_path):
    pms, _ = routes
    message_id = dead_letter(
        channel,
        pms,
        error_type="contract-violation\x1b[31m",
        body=HOSTILE_BODY,
        headers={"x-custom\x1b[8m": "value\x1b]0;pwned\x07", H.ERROR_MESSAGE: "line 1\nline 2\u202e"},
        type="BlackMapPublished\x1b[2J",
        correlation_id="corr\u2066x\u2069",
        message_id="id\x1b[1A\u202e",
    )
    runner, obj, store_url = CliRunner(), {"routes": routes}, f"sqlite:///{tmp_path}/store.sqlite3"

    # color=True: click would strip ANSI sequences itself when not writing to a terminal.
    shown = archive_cli(runner, ["show", "--id", message_id], obj, broker_url, store_url, color=True)
    assert shown.exit_code == 0, shown.output
    _inert(shown.stdout_bytes)
    out = shown.stdout_bytes.decode()
    assert "=== " + pms.dead_letter_queue + ": message id\\x1b[1A\\u202e\n" in out
    assert "error type:  contract-violation\\x1b[31m\n" in out
    assert "error:       line 1\\nline 2\\u202e\n" in out
    assert "  type: BlackMapPublished\\x1b[2J\n" in out
    assert "  correlation_id: corr\\u2066x\\u2069\n" in out
    assert "  x-custom\\x1b[8m: value\\x1b]0;pwned\\x07\n" in out
    assert '  {"note": "\\x1b[2J\\x1b]0;pwned\\x07 \\x9b31m \\u202e evil"}\n' in out

    listed = archive_cli(runner, ["list"], obj, broker_url, store_url, color=True)
    assert listed.exit_code == 0, listed.output
    _inert(listed.stdout_bytes)
    assert "contract-violation\\x1b[31m  BlackMapPublished\\x1b[2J  1" in listed.stdout_bytes.decode()


def test_a_body_declared_utf7_or_unicode_escape_is_not_decoded_with_it(broker_url, routes, channel, tmp_path):
    pms, _ = routes
    utf7 = dead_letter(channel, pms, body=b"+ABs-[2J+ABs-]0;pwned+AAc-", content_type="text/plain; charset=utf-7")
    escaped = dead_letter(channel, pms, body=b"\\x1b[2J", content_type="text/plain; charset=unicode_escape")
    runner, obj, store_url = CliRunner(), {"routes": routes}, f"sqlite:///{tmp_path}/store.sqlite3"

    [letter] = dlq.show(broker_url, routes, message_id=utf7)
    assert letter.body_text().shown_as == "bytes"
    for message_id, expected in ((utf7, "  +ABs-[2J+ABs-]0;pwned+AAc-\n"), (escaped, "  \\\\x1b[2J\n")):
        shown = archive_cli(runner, ["show", "--id", message_id], obj, broker_url, store_url, color=True)
        assert shown.exit_code == 0, shown.output
        _inert(shown.stdout_bytes)
        out = shown.stdout_bytes.decode()
        assert expected in out
        assert "is not used to decode (only UTF-8, GBK, GB2312, GB18030)" in out


def test_full_writes_the_exact_body_bytes(broker_url, routes, channel, tmp_path):
    pms, _ = routes
    body = HOSTILE_BODY + bytes(range(256)) + b"x" * 10_000
    message_id = dead_letter(channel, pms, body=body)
    runner, obj, store_url = CliRunner(), {"routes": routes}, f"sqlite:///{tmp_path}/store.sqlite3"
    target = tmp_path / "body.bin"

    to_file = archive_cli(runner, ["show", "--id", message_id, "--full", str(target)], obj, broker_url, store_url,
                          color=True)
    assert to_file.exit_code == 0, to_file.output
    assert target.read_bytes() == body
    assert target.stat().st_mode & 0o777 == 0o600
    _inert(to_file.stdout_bytes)
    assert f"body written to {target} ({len(body)} bytes)" in to_file.output
    assert "...[" in to_file.output  # the printed body is cut, the file is whole

    to_pipe = archive_cli(runner, ["show", "--id", message_id, "--full", "-"], obj, broker_url, store_url)
    assert to_pipe.exit_code == 0, to_pipe.output
    assert to_pipe.stdout_bytes == body

    dead_letter(channel, pms)
    several = archive_cli(runner, ["show", "--route", pms.name, "--full", "-"], obj, broker_url, store_url)
    assert several.exit_code == 2 and "choose one with --id" in several.output


# --- whose headers (issue 9, items 3 and 4) ---------------------------------------------------------


def test_an_unrouted_letter_is_unroutable_and_its_gridbus_headers_untrusted(fresh_broker_url, tmp_path):
    routes = make_routes("u")
    forged = {H.ERROR_TYPE: "delivery-refused", H.ERROR_MESSAGE: "forged: replay me", H.SOURCE_USER: "pms"}
    with Connection(fresh_broker_url) as conn:
        topology.declare(conn.default_channel, topology.derive(routes))
        ch = conn.connection.channel()
        ch.confirm_select()
        ch.basic_publish_confirm(
            amqp.Message(b"{}", message_id="lost-2", application_headers=forged),
            exchange="pms.out",
            routing_key="nobody.listens",
            mandatory=True,
        )
        wait_for(lambda: queue_count(ch, naming.UNROUTED_QUEUE) == 1)

    [letter] = dlq.show(fresh_broker_url, routes, route=dlq.UNROUTED)
    assert letter.error_type == "unroutable"
    assert letter.error_message == "no route is bound to exchange pms.out with routing key nobody.listens"
    assert letter.untrusted_headers == forged and letter.source_user is None
    summaries = {s.route: s for s in dlq.list_dead_letters(fresh_broker_url, routes)}
    assert summaries[dlq.UNROUTED].by_error_type == {"unroutable": 1}

    shown = archive_cli(CliRunner(), ["show", "--route", dlq.UNROUTED], {"routes": routes}, fresh_broker_url,
                        f"sqlite:///{tmp_path}/store.sqlite3")
    assert shown.exit_code == 0, shown.output
    out = shown.output
    assert "error type:  unroutable\n" in out
    assert "error:       no route is bound to exchange pms.out with routing key nobody.listens\n" in out
    label = out.index("UNTRUSTED headers (x-gridbus-* names, but not written by gridbus: set by the publisher):")
    for name, value in forged.items():
        assert out.index(f"  {name}: {value}\n") > label


def test_replay_of_the_publishers_original_keeps_none_of_its_gridbus_headers(broker_url, routes, channel):
    """RabbitMQ dead-lettered the message as the publisher sent it: its x-gridbus-* headers are the
    publisher's, and only the broker-checked user_id names the source."""
    pms, _ = routes
    message_id = str(uuid.uuid4())
    forged = {H.SOURCE_USER: "pms", H.ATTEMPT: 99, H.REPLAYED: 5, H.ERROR_TYPE: "delivery-failed", "custom": "c"}
    channel.basic_publish_confirm(
        amqp.Message(b"<x/>", message_id=message_id, user_id="guest", type="BlackMapPublished",
                     application_headers=forged),
        exchange=pms.source.exchange,
        routing_key=pms.source.routing_key,
        mandatory=True,
    )
    delivery = wait_for(lambda: channel.basic_get(pms.work_queue), what="the original in the work queue")
    channel.basic_reject(delivery.delivery_tag, requeue=False)
    wait_for(lambda: queue_count(channel, pms.dead_letter_queue) == 1, what="dead-lettered by the broker")
    [letter] = dlq.show(broker_url, routes, message_id=message_id)
    assert letter.error_type == "broker:rejected" and letter.source_user == "guest"
    assert letter.untrusted_headers.keys() == {H.SOURCE_USER, H.ATTEMPT, H.REPLAYED, H.ERROR_TYPE}

    result = dlq.replay(broker_url, routes, ids=[message_id], operator="ops-1")

    assert result.replayed == [(pms.name, message_id)]
    [copy] = drain(channel, pms.work_queue)
    headers = copy.properties["application_headers"]
    assert headers[H.SOURCE_USER] == "guest"
    assert headers[H.REPLAYED] == 1 and headers[H.ATTEMPT] == 1 and H.ERROR_TYPE not in headers
    assert headers["custom"] == "c" and headers[H.REPLAYED_BY] == "ops-1"
    assert datetime.fromisoformat(headers[H.REPLAYED_AT]) <= datetime.now(timezone.utc)


def test_a_forged_source_user_replayed_is_unauthorised_again(broker_url, store, vhost):
    """No user_id and ``x-gridbus-source-user: pms``: refused, and refused again after a replay."""
    from tests.support.amqp import UpstreamSystem, running_worker
    from tests.support.fakes import RecordingAdapter
    from tests.support.routes import NOTES, ROUTES, note_body

    rec = RecordingAdapter()
    guest = UpstreamSystem(vhost, "guest", "guest")
    try:
        with running_worker(ROUTES, broker_url, store, {"rec": rec}) as worker:
            message_id = guest.publish(
                "pms.out", "note.published", note_body(uuid.uuid4().hex), message_type="Note", user_id=None,
                headers={H.SOURCE_USER: NOTES.source.system, H.ROUTE: NOTES.name},
            )
            wait_for(lambda: worker.counts.get("dead-lettered") == 1)
            [refused] = dlq.show(broker_url, ROUTES, message_id=message_id)
            assert refused.error_type == "unauthorised"
            assert H.SOURCE_USER not in refused.headers and refused.source_user is None

            result = dlq.replay(broker_url, ROUTES, ids=[message_id], operator="ops-2")
            assert result.replayed == [(NOTES.name, message_id)]
            wait_for(lambda: worker.counts.get("dead-lettered") == 2)
        [again] = dlq.show(broker_url, ROUTES, message_id=message_id)
    finally:
        guest.close()
    assert again.error_type == "unauthorised"
    assert "no user_id" in again.error_message
    assert again.headers[H.REPLAYED] == 1 and again.headers[H.REPLAYED_BY] == "ops-2"
    assert H.SOURCE_USER not in again.headers
    assert rec.calls == [] and worker.counts.get("delivered") is None
