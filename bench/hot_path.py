"""Micro-benchmark of the per-message CPU path of every flow: decode, mappings, encode. No broker.

For each route: decode the example body, run the route's mappings with a hand-built
``MappingContext``, and encode every output (``encode()`` for AMQP outputs, ``to_soap()`` for SOAP
requests), N times. Prints microseconds per message (best of ``--repeat`` rounds).

    .venv/bin/python bench/hot_path.py             # N=5000, all four flows
    .venv/bin/python bench/hot_path.py -n 2000 --only black-map
    .venv/bin/python bench/hot_path.py --profile /tmp/hot.prof --only black-map
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gridbus.contracts.base import MappingContext  # noqa: E402
from gridbus.contracts.cmd.models import PlanChanged  # noqa: E402
from gridbus.contracts.mkt import EnergizationTimeSet, SupplyPlanPushed  # noqa: E402
from gridbus.contracts.pms import BlackMapPublished  # noqa: E402
from gridbus.mappings import cmd_to_mkt, events, mkt_to_cmd, pms_to_mkt  # noqa: E402

EXAMPLES = ROOT / "contracts" / "examples"
NOW = datetime(2026, 12, 8, 17, 0, tzinfo=timezone(timedelta(hours=8)))

FLOWS = {
    "black-map": (BlackMapPublished, "pms.BlackMapPublished.xml", "pms",
                  (pms_to_mkt.black_map_notice, events.black_map_created)),
    "black-map-gbk": (BlackMapPublished, "pms.BlackMapPublished.gbk.xml", "pms",
                      (pms_to_mkt.black_map_notice, events.black_map_created)),
    "supply-plan": (SupplyPlanPushed, "mkt.SupplyPlanPushed.json", "mkt",
                    (mkt_to_cmd.supply_plan, events.supply_plan_created)),
    "energization-time": (EnergizationTimeSet, "mkt.EnergizationTimeSet.json", "mkt",
                          (mkt_to_cmd.energization_time, events.energization_time_changed)),
    "plan-changed": (PlanChanged, "cmd.PlanChanged.xml", "cmd",
                     (cmd_to_mkt.plan_change_notice, events.plan_changed)),
}


def context(system: str) -> MappingContext:
    return MappingContext(
        route="bench", step="step", message_id="gb-0001-step", correlation_id="HV2026110300017",
        source_message_id="src-0001", source_system=system, now=NOW,
    )


def output_bytes(output) -> object:
    if hasattr(output, "encode"):
        return output.encode()
    return output.to_soap()


def one_round(contract, body: bytes, ctx: MappingContext, mappings, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        message = contract.decode(body)
        for mapping in mappings:
            output_bytes(mapping(message, ctx))
    return (time.perf_counter() - started) / n * 1e6


def stages(contract, body: bytes, ctx: MappingContext, mappings, n: int) -> str:
    """µs per message of each stage on its own, for orientation."""
    parts = []
    started = time.perf_counter()
    for _ in range(n):
        message = contract.decode(body)
    parts.append(f"decode {(time.perf_counter() - started) / n * 1e6:.0f}")
    for mapping in mappings:
        started = time.perf_counter()
        for _ in range(n):
            output = mapping(message, ctx)
        mapped = (time.perf_counter() - started) / n * 1e6
        started = time.perf_counter()
        for _ in range(n):
            output_bytes(output)
        encoded = (time.perf_counter() - started) / n * 1e6
        parts.append(f"{mapping.__name__} {mapped:.0f} + encode {encoded:.0f}")
    return ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5000, help="messages per round (default 5000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best is printed (default 3)")
    parser.add_argument("--only", choices=sorted(FLOWS), action="append", help="flows to run (default all)")
    parser.add_argument("--profile", metavar="PATH", help="cProfile one round of each flow into PATH")
    args = parser.parse_args()

    for name in args.only or list(FLOWS):
        contract, example, system, mappings = FLOWS[name]
        body = (EXAMPLES / example).read_bytes()
        ctx = context(system)
        one_round(contract, body, ctx, mappings, min(args.n, 200))  # warm-up: schemas, caches
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(one_round, contract, body, ctx, mappings, args.n)
            profiler.dump_stats(args.profile)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
            continue
        best = min(one_round(contract, body, ctx, mappings, args.n) for _ in range(args.repeat))
        print(f"{name:18s}: {best:7.1f} us/msg  (N={args.n}, best of {args.repeat}; "
              f"{stages(contract, body, ctx, mappings, max(args.n // 5, 100))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
