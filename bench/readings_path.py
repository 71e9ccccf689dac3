"""Micro-benchmark of the worker's batch path for the readings route (flow 9), without a broker.

``Settlement.process`` on parts of ``--records`` daily frozen records, one part a batch, in this
process: the real pipeline, store (SQLite in a temporary directory, or a PostgreSQL schema of its
own, dropped at the end), the trading center's SOAP stub over loopback HTTP, and marketing's,
the reply's and the event's publish frames written to a null socket that confirms at once. The
store holds the last reading of ``--points`` metering points, every tenth benched point in the
retail market, as ``bench/readings.py`` sets it up. Prints seconds per part and records per
second: gridbus's own share of the worker's time in ``bench/readings.py``, free of the broker.

    .venv/bin/python bench/readings_path.py                        # SQLite, 4 parts of 10,000
    .venv/bin/python bench/readings_path.py --store postgresql
    .venv/bin/python bench/readings_path.py --profile /tmp/path.prof   # cProfile, top 35 by own time
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from batch_path import InstantPublisher, _Message  # noqa: E402
from readings import bench_store, prefill  # noqa: E402

from gridbus.adapters.soap_stub import SoapStub  # noqa: E402
from gridbus.contracts.soap import peer_wsdl  # noqa: E402
from gridbus.tools.cli import GC_THRESHOLD  # noqa: E402
from gridbus.routes.meter_readings import DAILY_FROZEN_PUBLISHED as ROUTE  # noqa: E402
from gridbus.tools.readings_batch import DAY, Batch, good_record  # noqa: E402
from gridbus.workers.bootstrap import adapter_factory  # noqa: E402
from gridbus.workers.logging import configure  # noqa: E402
from gridbus.workers.pipeline import Delivery  # noqa: E402
from gridbus.workers.runtime import Worker  # noqa: E402
from gridbus.workers.settings import load_settings  # noqa: E402
from gridbus.workers.store import Store  # noqa: E402


class _Publisher(InstantPublisher):
    """A part's MeterReadings needs several frames: py-amqp's ``basic_publish`` takes it, here
    encoded with py-amqp's own frame writer onto the null socket."""

    def __init__(self):
        super().__init__()
        channel = self._channel
        channel.basic_publish = self._large

    def _large(self, message, exchange, routing_key, mandatory):
        from amqp.method_framing import frame_writer

        class _Conn:
            bytes_sent = 0
            frame_max = 131072

        writer = frame_writer(_Conn(), self._channel.connection.transport)
        writer(1, 1, (60, 40), b"", message)  # basic.publish's method frame, header and body frames


def _message(body: bytes, tag: int) -> _Message:
    return _Message(body, tag, message_type="DailyFrozenPublished", user="mdc", exchange=ROUTE.source.exchange,
                    routing_key=ROUTE.source.routing_key)


def run(args) -> None:
    configure("json", "WARNING")  # as bench/readings.py runs the worker
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])  # as `gridbus worker` does
    with tempfile.TemporaryDirectory() as tmp, bench_store(args.store, Path(tmp)) as store_url:
        parts = args.parts + 1  # the first warms the schemas and caches, and is not counted
        store = Store(store_url)
        prefill(store, max(args.points, parts * args.records), 10, parts * args.records)
        bodies = [
            Batch(f"MDC-PATH-{p:03d}", DAY, tuple(good_record(n, DAY) for n in range(p * args.records + 1, (p + 1) * args.records + 1)),
                  part_no=p + 1, part_count=parts).xml()
            for p in range(parts)
        ]
        with SoapStub(peer_wsdl("tc"), path="/tc") as stub:
            os.environ["GRIDBUS_SOAP_PEERS"] = f"tc={stub.url}"
            settings = load_settings()
            worker = Worker([ROUTE], broker_url="amqp://unused", store=store, adapters=adapter_factory(settings),
                            source_users={"mdc": "mdc"}, options=settings.mapping_options())
            publisher = _Publisher()
            worker._publisher, worker.settlement.multiple_ack = publisher, True
            profiler = None
            times = []
            for n, body in enumerate(bodies):
                if n == 1 and args.profile:
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                batch = [Delivery(route=ROUTE, message=_message(body, n + 1))]
                started = time.perf_counter()
                worker.settlement.process(batch)
                times.append(time.perf_counter() - started)
                if batch[0].outcome != "delivered":
                    raise SystemExit(f"part {n + 1}: {batch[0].outcome} {batch[0].error}")
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
        store.close()
    counted = sorted(times[1:])
    median = counted[len(counted) // 2]
    print(f"readings batch path ({args.store}): {median:.3f} s per part of {args.records:,} (median of {len(counted)}; "
          f"best {counted[0]:.3f}), {args.records / median:,.0f} records/s")
    if args.profile:
        import pstats

        pstats.Stats(args.profile).sort_stats("tottime").print_stats(35)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--profile", metavar="PATH")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
