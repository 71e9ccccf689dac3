"""A worker killed by a fatal error in a C library leaves every thread's Python stack in its log."""

from __future__ import annotations

import signal

from tests.support.amqp import declare_routes, wait_for
from tests.support.processes import WorkerProcess
from tests.support.readings import ROUTES


def test_an_abort_prints_every_lanes_stack_before_the_worker_ends(broker_url, tmp_path):
    declare_routes(broker_url, ROUTES)
    worker = WorkerProcess(broker_url, f"sqlite:///{tmp_path}/store.sqlite3", "tests.support.readings:ROUTES", tmp_path,
                           gridbus_soap_peers="tc=http://127.0.0.1:9/tc", gridbus_lane_consumers=2)
    try:
        worker.start()
        wait_for(lambda: worker.log_path.read_text(errors="replace").count('"worker.started"') == 2, timeout=30,
                 what="both consumers started")
        worker.signal(signal.SIGABRT)  # what glibc does on a corrupted heap ("free(): invalid pointer")
        worker.proc.wait(20)
        worker.reap()
    finally:
        worker.close()
    log = worker.log_path.read_text(errors="replace")
    assert "Fatal Python error: Aborted" in log
    assert log.count("Thread 0x") >= 3, log[-2000:]  # the main thread and both consumers' threads
    assert "lanes.py" in log  # where the lanes were, in Python
