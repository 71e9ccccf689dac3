"""How a worker process is assembled: routes split into lanes by the synchronous peers they
call, one breaker per peer shared by the lanes, and what ends the lanes. Nothing connects here."""

from __future__ import annotations

import threading

import pytest

from gridbus.routes import ROUTES
from gridbus.routes.hv_install import (
    BLACK_MAP_PUBLISHED,
    ENERGIZATION_COMPLETED,
    ENERGIZATION_TIME_SET,
    OUTAGE_PLANNED,
    PLAN_CHANGED,
    PROJECT_CREATED,
    SUPPLY_PLAN_PUSHED,
)
from gridbus.routes.master_data import MKT_MASTER_DATA_CHANGED, PMS_MASTER_DATA_CHANGED
from gridbus.workers.bootstrap import build_lanes
from gridbus.workers.breaker import GuardedAdapter
from gridbus.workers.lanes import Lanes, plan_lanes
from gridbus.workers.settings import Settings


def test_routes_are_split_by_the_synchronous_peers_they_call():
    lanes = {lane.name: lane for lane in plan_lanes(ROUTES, {"cmd", "tc"})}
    assert sorted(lanes) == ["amqp", "cmd", "tc"]
    assert [r.name for r in lanes["cmd"].routes] == [
        SUPPLY_PLAN_PUSHED.name, ENERGIZATION_TIME_SET.name, ENERGIZATION_COMPLETED.name]
    assert [r.name for r in lanes["amqp"].routes] == [
        BLACK_MAP_PUBLISHED.name, PROJECT_CREATED.name, PLAN_CHANGED.name, OUTAGE_PLANNED.name,
        PMS_MASTER_DATA_CHANGED.name, MKT_MASTER_DATA_CHANGED.name,
    ]
    assert lanes["tc"].peers == ("tc",) and "gridbus.ownership-due" in [r.name for r in lanes["tc"].routes]
    assert sum(len(lane.routes) for lane in lanes.values()) == len(ROUTES)

    [single] = plan_lanes(ROUTES, {"cmd", "tc"}, split=False)
    assert (single.name, single.peers, single.routes) == ("all", ("cmd", "tc"), tuple(ROUTES))


def settings(tmp_path, **overrides) -> Settings:
    return Settings(store_url=f"sqlite:///{tmp_path}/store.sqlite3", **overrides)


def test_each_lane_has_its_own_adapters_behind_one_breaker_per_peer(tmp_path):
    lanes = build_lanes(settings(tmp_path), ROUTES)

    workers = lanes.workers
    assert sorted(workers) == ["amqp", "cmd", "tc"]
    cmd, amqp, tc = workers["cmd"].adapters["cmd"], workers["amqp"].adapters["cmd"], workers["tc"].adapters["cmd"]
    assert all(isinstance(a, GuardedAdapter) for a in (cmd, amqp, tc))
    assert cmd.breaker is amqp.breaker is tc.breaker  # one breaker per peer in the process ...
    assert cmd.adapter is not tc.adapter  # ... and each lane's own HTTP session
    assert cmd.on_return == workers["cmd"].progressed  # a call that ends is progress for that lane's watchdog
    assert not isinstance(workers["amqp"].adapters["mkt"], GuardedAdapter)
    assert len({id(w.store) for w in workers.values()}) == 1  # SQLite: one connection, shared


def test_a_deadline_no_longer_than_a_call_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lane cmd calls cmd.*GRIDBUS_MESSAGE_DEADLINE_S \\(10 s\\) must be longer"):
        build_lanes(settings(tmp_path, message_deadline_s=10, soap_timeout_s=10), ROUTES)
    # a lane that calls no peer has no call to wait for
    lanes = build_lanes(settings(tmp_path, message_deadline_s=2, soap_timeout_s=10), [BLACK_MAP_PUBLISHED])
    assert list(lanes.workers) == ["amqp"]


def test_lanes_off_is_one_loop_for_every_route(tmp_path):
    lanes = build_lanes(settings(tmp_path, lanes=False), ROUTES)
    assert list(lanes.workers) == ["all"] and lanes.workers["all"].routes == list(ROUTES)


def test_several_consumers_per_lane_are_workers_of_their_own_on_the_lanes_routes(tmp_path):
    lanes = build_lanes(settings(tmp_path, lane_consumers=2, worker_name="w1"), ROUTES)
    workers = lanes.workers
    assert sorted(workers) == ["amqp#1", "amqp#2", "cmd#1", "cmd#2", "tc#1", "tc#2"]
    assert workers["tc#1"].routes == workers["tc#2"].routes and workers["tc#1"] is not workers["tc#2"]
    assert workers["tc#1"].adapters["tc"].adapter is not workers["tc#2"].adapters["tc"].adapter  # sessions of their own
    assert workers["tc#1"].adapters["tc"].breaker is workers["tc#2"].adapters["tc"].breaker  # one breaker per peer
    assert len({id(w.store) for w in workers.values()}) == 1  # SQLite: one connection, shared
    assert {w.name for w in workers.values()} == {f"w1/{lane}#{n}" for lane in ("amqp", "cmd", "tc") for n in (1, 2)}


class FakeWorker:
    """Runs until stopped, or raises ``error`` at once."""

    def __init__(self, error: Exception | None = None):
        self.error = error
        self.routes = []
        self.counts = {"delivered": 2}
        self.stopped = threading.Event()

    def run(self, **_kwargs) -> None:
        if self.error is not None:
            raise self.error
        self.stopped.wait(10)

    def stop(self) -> None:
        self.stopped.set()


def test_a_lane_that_fails_stops_the_others_and_its_error_is_raised():
    healthy, broken = FakeWorker(), FakeWorker(RuntimeError("store is gone"))
    lanes = Lanes({"amqp": healthy, "cmd": broken})

    with pytest.raises(RuntimeError, match="lane cmd ended with RuntimeError: store is gone"):
        lanes.run()
    assert healthy.stopped.is_set()
    assert lanes.counts == {"delivered": 4}


def test_stop_ends_every_lane():
    workers = {"amqp": FakeWorker(), "cmd": FakeWorker()}
    lanes = Lanes(workers)
    thread = threading.Thread(target=lanes.run)
    thread.start()
    lanes.stop()
    thread.join(5)
    assert not thread.is_alive() and all(w.stopped.is_set() for w in workers.values())
