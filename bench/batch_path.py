"""Micro-benchmark of the worker's batch path for the black-map route, without a broker.

What ``Settlement.process`` does with a batch of deliveries, on the real pipeline, store (SQLite
in a temporary directory), adapters and publish-frame encoding: the idempotency lookup, checks,
decoding, mappings, output ids, both publishes (frames built, written to a null socket), the
store commit and the acks. Only the socket reads and the broker's confirms are missing: every
publish is confirmed at once. Prints microseconds per message (best of ``--repeat`` rounds),
the part of the worker's CPU per message in ``bench/black_map.py`` that is gridbus's own.

    .venv/bin/python bench/batch_path.py                  # 20,000 messages in batches of 100
    .venv/bin/python bench/batch_path.py --profile /tmp/batch.prof
    .venv/bin/python bench/batch_path.py --metrics --repeat 5   # the meter's cost: rounds off and on, alternating
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gridbus.adapters.amqp import build_amqp_adapters  # noqa: E402
from gridbus.routes import ROUTES  # noqa: E402
from gridbus.workers.amqp import PublishFrames, Publisher  # noqa: E402
from gridbus.workers.logging import configure  # noqa: E402
from gridbus.workers.pipeline import Delivery  # noqa: E402
from gridbus.workers.runtime import Worker  # noqa: E402
from gridbus.workers.store import Store  # noqa: E402

ROUTE = "pms.black-map-published"
EXAMPLE = ROOT / "contracts" / "examples" / "pms.BlackMapPublished.xml"


class _NullTransport:
    def __init__(self):
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)


class _NullConnection:
    frame_max = 131072

    def __init__(self):
        self.transport = _NullTransport()
        self.bytes_sent = 0


class _Channel:
    channel_id = 1

    def __init__(self):
        self.connection = _NullConnection()


class InstantPublisher(Publisher):
    """The real publish path (frames and pending tickets); every ticket is confirmed at ``wait``."""

    def __init__(self):  # noqa: D107 - no connection: see the class docstring
        self.confirms = True
        self.confirm_timeout_s = 30.0
        self.write_buffer_bytes = 16384
        self._pending, self._unsettled, self._acked_up_to, self._seq = {}, 0, 0, 0
        self._out, self._out_bytes = [], 0
        self._channel = _Channel()
        self._frames = PublishFrames(1)
        self.encoded = 0

    def wait(self, timeout=None, meanwhile=None):
        self._flush()
        if self._seq:
            self._settle(self._seq, True, None)
        settled = {tag: p.error for tag, p in self._pending.items()}
        self._pending.clear()
        self._unsettled = 0
        return settled


class _Message:
    """What the worker reads of a kombu message, and its ack."""

    __slots__ = ("body", "properties", "headers", "delivery_info", "delivery_tag", "acked")

    def __init__(self, body: bytes, tag: int, *, message_type: str = "BlackMapPublished", user: str = "pms",
                 exchange: str = "pms.out", routing_key: str = "pms.black-map-published"):
        self.body = body
        self.properties = {
            "message_id": str(uuid.uuid4()), "type": message_type, "user_id": user,
            "content_type": "application/xml", "delivery_mode": 2,
        }
        self.headers = {}
        self.delivery_info = {"exchange": exchange, "routing_key": routing_key, "redelivered": False}
        self.delivery_tag = tag
        self.acked = 0

    def ack(self, multiple: bool = False) -> None:
        self.acked += 1


def bodies(n: int, template: str) -> list[bytes]:
    return [template.replace("HV2026110300017", f"HV2026{i:09d}").encode("utf-8") for i in range(n)]


def one_round(n: int, batch_size: int, template: str, profile: str | None = None, metrics: bool = False) -> float:
    route = next(r for r in ROUTES if r.name == ROUTE)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        publisher = InstantPublisher()
        worker = Worker([route], broker_url="amqp://unused", store=store, adapters=build_amqp_adapters, metrics=metrics)
        worker._publisher, worker.settlement.multiple_ack = publisher, True
        all_bodies = bodies(n, template)
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        outcomes: set = set()
        started = time.perf_counter()
        for first in range(0, n, batch_size):  # a batch lives as long as in the worker: no heap growth
            batch = [
                Delivery(route=route, message=_Message(body, first + i + 1))
                for i, body in enumerate(all_bodies[first:first + batch_size])
            ]
            worker.settlement.process(batch)
            outcomes.update(d.outcome for d in batch)
        elapsed = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        if outcomes != {"delivered"} or publisher._channel.connection.bytes_sent != 2 * n:
            raise SystemExit(f"unexpected outcomes {outcomes} or publishes {publisher._channel.connection.bytes_sent}")
        store.close()
    return elapsed / n * 1e6


def meter_alone(batch_size: int, template: str, batches: int = 2000) -> float:
    """Microseconds per message of ``Meter.after_settle`` by itself, best of 5: the part of
    the difference above that is the meter's, free of the rest of the batch path's noise."""
    from gridbus.workers.metrics import Meter

    route = next(r for r in ROUTES if r.name == ROUTE)
    batch = [
        Delivery(route=route, message=_Message(body, i + 1)) for i, body in enumerate(bodies(batch_size, template))
    ]
    for d in batch:
        d.outcome = "delivered"
    meter, best = Meter("bench", [route.name]), float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(batches):
            meter.after_settle(batch)
        best = min(best, time.perf_counter() - started)
    return best / (batches * batch_size) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20000, help="messages per round (default 20000)")
    parser.add_argument("--batch", type=int, default=100, help="batch size (default 100, as the worker)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best is printed (default 3)")
    parser.add_argument("--profile", metavar="PATH", help="cProfile one round into PATH and print the top")
    parser.add_argument(
        "--metrics", action="store_true",
        help="rounds with the worker's meter (GRIDBUS_METRICS_PORT set) and without, alternating; prints both",
    )
    args = parser.parse_args()
    configure("json", "WARNING")  # as bench/black_map.py runs the worker
    template = EXAMPLE.read_text(encoding="utf-8")
    one_round(min(args.n, 500), args.batch, template)  # warm-up: schemas, caches
    if args.profile:
        import pstats

        one_round(args.n, args.batch, template, args.profile)
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(30)
        return 0
    if args.metrics:
        off, on = [], []
        for _ in range(args.repeat):
            off.append(one_round(args.n, args.batch, template))
            on.append(one_round(args.n, args.batch, template, metrics=True))
        for label, times in (("off", off), ("on ", on)):
            rounds = ", ".join(f"{t:.1f}" for t in times)
            print(f"black-map batch path, metrics {label}: {min(times):6.1f} us/msg  (rounds: {rounds})")
        print(f"  metrics cost: {min(on) - min(off):+.1f} us/msg (best of {args.repeat} each, N={args.n})")
        alone = meter_alone(args.batch, template)
        print(f"  the meter alone: {alone:.2f} us/msg (Meter.after_settle on settled batches)")
        return 0
    best = min(one_round(args.n, args.batch, template) for _ in range(args.repeat))
    print(f"black-map batch path: {best:6.1f} us/msg  (N={args.n}, batches of {args.batch}, best of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
