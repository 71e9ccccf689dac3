"""What one SOAP peer's outage costs the other routes: the command center answers 503, or hangs,
for ``--outage`` seconds under ``--plans`` supply plans, while black maps are published one after
another (every 50 ms) and each is timed from publish to marketing's inbox.

The worker is what ``gridbus worker`` runs (``workers.bootstrap.build_lanes``), in this process,
with the default settings (SOAP timeout 10 s, breaker 5 failures / 30 s cool-down, retry 5 s
doubling), against the local RabbitMQ, in a vhost of its own that is deleted at the end, and the
command center's loopback SOAP stub. It prints the black maps' latency, the most supply plans
seen in the delay queues at once, the longest a supply plan was in the worker's hand, when every
plan had been applied (and whether each exactly once), and the breaker's changes of state.

    .venv/bin/python bench/peer_outage.py                      # 503 for 30 s, lanes
    .venv/bin/python bench/peer_outage.py --kind delay         # the peer hangs (each call times out)
    .venv/bin/python bench/peer_outage.py --kind delay --single-loop   # every route in one loop
    .venv/bin/python bench/peer_outage.py --kind delay --outage 75     # long enough for the breaker to
                                                                       # open (5 calls x 10 s)

Needs ``rabbitmqctl`` (for the vhost and the bench's own users ``gridbus-bench-mkt`` and
``gridbus-bench-pms``, which GRIDBUS_SOURCE_USERS maps to the two systems; no other user is touched).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pika
from kombu import Connection

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gridbus.adapters.soap_stub import SoapStub  # noqa: E402
from gridbus.contracts.soap import peer_wsdl  # noqa: E402
from gridbus.routes.hv_install import BLACK_MAP_PUBLISHED as BLACK_MAP  # noqa: E402
from gridbus.routes.hv_install import SUPPLY_PLAN_PUSHED as SUPPLY  # noqa: E402
from gridbus.contracts.naming import system_inbox_queue  # noqa: E402
from gridbus.workers import logging as gridbus_logging  # noqa: E402
from gridbus.workers.bootstrap import build_lanes  # noqa: E402
from gridbus.workers.settings import Settings  # noqa: E402

EXAMPLES = REPO / "contracts" / "examples"
PASSWORD = "gridbus-bench"
#: The bench's own user for each system it publishes as.
USERS = {"mkt": "gridbus-bench-mkt", "pms": "gridbus-bench-pms"}


def rabbitmqctl(*args: str) -> str:
    return subprocess.run([shutil.which("rabbitmqctl") or "rabbitmqctl", *args], check=True, capture_output=True,
                          text=True, timeout=120).stdout


def prepare(vhost: str) -> None:
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    users = {line.split("\t", 1)[0] for line in rabbitmqctl("list_users", "--quiet").splitlines()}
    for system, user in USERS.items():
        if user in users:
            rabbitmqctl("change_password", user, PASSWORD)
        else:
            rabbitmqctl("add_user", user, PASSWORD)
        rabbitmqctl("set_permissions", "-p", vhost, user, "^$", rf"^{system}\.out$", "^$")


def publisher(vhost: str, user: str):
    params = pika.ConnectionParameters("127.0.0.1", virtual_host=vhost, credentials=pika.PlainCredentials(user, PASSWORD))
    channel = pika.BlockingConnection(params).channel()
    channel.confirm_delivery()
    return channel


def publish(channel, route, body: bytes, user: str, **properties) -> None:
    props = pika.BasicProperties(message_id=str(uuid.uuid4()), type=route.contract.message_type, user_id=user,
                                 delivery_mode=2, **properties)
    channel.basic_publish(route.source.exchange, route.source.routing_key, body, properties=props, mandatory=True)


def measure(vhost: str, kind: str, outage_s: float, plans: int, lanes: bool, store_dir: str) -> dict:
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    logs = io.StringIO()
    gridbus_logging.configure("json", "INFO", stream=logs)
    with SoapStub(peer_wsdl("cmd"), path="/cmd", delay_s=outage_s + 5) as stub:
        settings = Settings(broker_url=url, store_url=f"sqlite:///{store_dir}/store.sqlite3",
                            soap_peers={"cmd": stub.url}, lanes=lanes, source_users=USERS)
        worker = build_lanes(settings, (SUPPLY, BLACK_MAP))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        while not all(w._publisher is not None for w in worker.workers.values()):
            time.sleep(0.05)
        mkt, pms = publisher(vhost, USERS["mkt"]), publisher(vhost, USERS["pms"])
        inbox = Connection(url)
        inbox_channel = inbox.channel()
        peak, done = [0], threading.Event()

        def count_delayed() -> None:
            with Connection(url) as conn:
                channel = conn.channel()
                while not done.wait(0.2):
                    peak[0] = max(peak[0], sum(channel.queue_declare(SUPPLY.delay_queue(d), passive=True).message_count
                                               for d in SUPPLY.retry.delay_tiers))

        threading.Thread(target=count_delayed, daemon=True).start()
        plan_body = (EXAMPLES / "mkt.SupplyPlanPushed.json").read_bytes()
        black_map = (EXAMPLES / "pms.BlackMapPublished.xml").read_bytes()
        stub.fail_for(outage_s, kind)
        started = time.monotonic()
        applications = [f"HV{uuid.uuid4().int % 10**13:013d}" for _ in range(plans)]
        for application in applications:
            publish(mkt, SUPPLY, plan_body.replace(b"HV2026110300017", application.encode()), USERS["mkt"],
                    content_type="application/json")
        latencies = []
        while time.monotonic() - started < outage_s:
            correlation, sent = str(uuid.uuid4()), time.monotonic()
            # one application each: a black map of the same application and graph version is superseded
            body = black_map.replace(b"HV2026110300017", f"HV{uuid.uuid4().int % 10**13:013d}".encode())
            publish(pms, BLACK_MAP, body, USERS["pms"], content_type="application/xml", correlation_id=correlation)
            while True:
                message = inbox_channel.basic_get(system_inbox_queue("mkt"), no_ack=True)
                if message is not None and message.properties.get("correlation_id") == correlation:
                    break
                if message is None:
                    time.sleep(0.002)
            latencies.append(time.monotonic() - sent)
            time.sleep(0.05)
        done.set()
        while not {c.payload["ApplicationNo"] for c in stub.effects()} >= set(applications):
            time.sleep(0.2)
        recovered_s = time.monotonic() - started
        worker.stop()
        thread.join(30)
        inbox.release()
        effects = [c.payload["ApplicationNo"] for c in stub.effects()]
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    held = [line["duration_ms"] for line in lines if line.get("event") == "message" and line["route"] == SUPPLY.name]
    return dict(
        latencies=sorted(latencies), peak_delayed=peak[0], longest_held_s=max(held) / 1000, recovered_s=recovered_s,
        exactly_once=sorted(effects) == sorted(applications), calls=len(stub.calls),
        breaker=[line["state"] for line in lines if line.get("event") == "breaker.state"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("http503", "delay"), default="http503", help="503 answers, or hanging calls")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the peer is down (default 30)")
    parser.add_argument("--plans", type=int, default=500, help="supply plans published as it goes down (default 500)")
    parser.add_argument("--single-loop", action="store_true", help="GRIDBUS_LANES=false: every route in one loop")
    args = parser.parse_args(argv)
    vhost = f"gridbus-bench-outage-{uuid.uuid4().hex[:8]}"
    try:
        prepare(vhost)
        with tempfile.TemporaryDirectory(prefix="gridbus-outage-") as tmp:
            r = measure(vhost, args.kind, args.outage, args.plans, not args.single_loop, tmp)
    finally:
        subprocess.run([shutil.which("rabbitmqctl") or "rabbitmqctl", "delete_vhost", vhost], capture_output=True)
    lat = r["latencies"]
    print(f"peer {args.kind} for {args.outage:g} s, {args.plans} supply plans, "
          f"{'one loop' if args.single_loop else 'lanes'}:")
    print(f"  black maps     : {len(lat)} timed, p50 {statistics.median(lat) * 1000:.0f} ms, "
          f"p99 {lat[max(0, int(len(lat) * 0.99) - 1)] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")
    print(f"  supply plans   : at most {r['peak_delayed']} in the delay queues at once, longest in the worker's hand "
          f"{r['longest_held_s']:.2f} s, all applied {r['recovered_s']:.0f} s after the outage began, "
          f"each exactly once: {r['exactly_once']}")
    print(f"  command center : {r['calls']} calls; breaker: {' -> '.join(r['breaker']) or 'never opened'}")
    return 0 if r["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
