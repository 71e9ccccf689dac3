"""The ``gridbus`` command."""

from __future__ import annotations

import faulthandler
import gc
import sys

import click

from gridbus import __version__
from gridbus.tools import context


#: Allocations between two passes of the cyclic collector's youngest generation in a worker.
GC_THRESHOLD = 50_000


@click.group()
@click.version_option(__version__, prog_name="gridbus", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    """gridbus: message-driven integration between the trading center, marketing, PMS,
    meter data collection and the command center, on RabbitMQ."""
    context.settings()  # read once, here: invalid settings end any command before it starts


@main.command()
@click.option("--route", "route_names", multiple=True, help="Run only these routes (default: all).")
@click.option("--routes-module", default=None, help="Where the routes are, as module:ATTRIBUTE (default gridbus.routes:ROUTES).")
@click.option("--broker", default=None, help="Override GRIDBUS_BROKER_URL.")
@click.option("--store", default=None, help="Override GRIDBUS_STORE_URL.")
def worker(route_names, routes_module, broker, store) -> None:
    """Consume the routes' work queues until SIGTERM (finishes the batch in hand, loses nothing)."""
    from gridbus.workers import logging as gridbus_logging
    from gridbus.workers.bootstrap import build_lanes, load_routes
    from gridbus.workers.store import Store

    settings = context.settings(broker=broker, store=store)
    gridbus_logging.configure(settings.log_format, settings.log_level)
    try:
        routes = load_routes(routes_module, route_names)
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from exc
    shared = None if settings.store_url.startswith(("postgresql://", "postgres://")) else Store(settings.store_url)
    try:
        runtime = build_lanes(settings, routes, store=shared)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    probes = None
    if settings.metrics_port is not None:
        from gridbus.workers.probes import ProbeServer

        try:
            probes = ProbeServer(runtime.workers.values(), settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            raise click.UsageError(
                f"GRIDBUS_METRICS_PORT={settings.metrics_port}: cannot listen on "
                f"{settings.metrics_host}:{settings.metrics_port} ({exc.strerror or exc})"
            ) from exc
        probes.start()
    runtime.install_signal_handlers()
    runtime.start_watchdog()
    ingester = _start_ingester(settings, routes, shared)
    # What start-up made (modules, contract models, routes) lives as long as the process: kept
    # out of the cyclic collector's full passes, which would walk it again every few thousand messages.
    gc.collect()
    gc.freeze()
    # A fatal error in a C library (a segmentation fault, an abort) prints every thread's Python
    # stack to stderr before the process ends: the supervisor's log then says where it happened.
    faulthandler.enable(all_threads=True)
    # A batch makes hundreds of thousands of short-lived objects (a readings part: ten thousand
    # records and their registers), which reference counting frees; the collector's default pass
    # every 700 allocations would walk them dozens of times a part, for no cycle found.
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    try:
        runtime.run()
    finally:
        if ingester is not None:
            ingester.stop()
        if probes is not None:
            probes.stop()


def _start_ingester(settings, routes, shared):
    """The dead-letter ingester of this worker (GRIDBUS_ARCHIVE_INGEST), in a thread and on a
    broker connection of its own. On SQLite it shares the lanes' store connection (two writers
    on one file would refuse each other's transactions); on PostgreSQL it has its own, so the
    archive's commits never wait on the worker's."""
    if not settings.archive_ingest or not settings.broker_url.startswith(("amqp://", "amqps://")):
        return None
    from gridbus.tools.archive import Ingester
    from gridbus.tools.retention import Retention, RetentionSettings
    from gridbus.workers.store import Store

    store = shared if shared is not None else Store(settings.store_url)
    retention = Retention(store, RetentionSettings.of(settings), who=f"worker {settings.worker_name}")
    ingester = Ingester(settings.broker_url, routes, store, retention=retention)
    ingester.start()
    return ingester


@main.group("topology")
def topology_group() -> None:
    """The broker topology derived from the routes."""


@topology_group.command("show")
@click.option("--routes-module", default=None, help="module:ATTRIBUTE of the routes (default gridbus.routes:ROUTES).")
def topology_show(routes_module) -> None:
    """Print every exchange, queue (with its arguments) and binding."""
    from gridbus.workers import topology
    from gridbus.workers.bootstrap import load_routes

    click.echo(topology.render(topology.derive(load_routes(routes_module))))


@topology_group.command("declare")
@click.option("--routes-module", default=None, help="module:ATTRIBUTE of the routes (default gridbus.routes:ROUTES).")
@click.option("--broker", default=None, help="Override GRIDBUS_BROKER_URL.")
def topology_declare(routes_module, broker) -> None:
    """Create the topology on the broker (idempotent; on the first node that answers)."""
    import os
    import socket

    from gridbus.workers import topology
    from gridbus.workers.bootstrap import load_routes
    from gridbus.workers.amqp import BrokerNodes

    settings = context.settings(broker=broker)
    topo = topology.derive(load_routes(routes_module))
    name = f"gridbus topology@{socket.gethostname()} pid {os.getpid()} declare"
    with BrokerNodes(settings.broker_url).connect(name) as conn:
        channel = conn.channel()
        topology.declare(channel, topo)
    click.echo(f"declared {len(topo.exchanges)} exchanges, {len(topo.queues)} queues, {len(topo.bindings)} bindings")


@main.command()
@click.option("--broker", default="memory://", show_default=True, help="memory:// or an amqp:// URL.")
@click.option(
    "--system-password",
    "system_passwords",
    multiple=True,
    metavar="SYSTEM=PASSWORD",
    help="Password of an upstream system's RabbitMQ user (amqp only), e.g. mkt=secret.",
)
def demo(broker, system_passwords) -> None:
    """Run the high-voltage new-installation, retail-market and master-data flows end to end and check the result."""
    from gridbus.workers import logging as gridbus_logging
    from gridbus.tools.demo import run_demo

    gridbus_logging.configure("console", "WARNING")
    passwords = dict(p.split("=", 1) for p in system_passwords)
    ok = run_demo(broker, passwords)
    click.echo("\ndemo " + ("passed" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


@main.command()
@click.argument("peer")
@click.option(
    "--port", type=int, default=None, help="Default: the port of the peer's endpoint URL (8081 cmd, 8082 tc); 0: any free port."
)
def stub(peer, port) -> None:
    """Serve a loopback SOAP stub of PEER, a SOAP peer such as cmd or tc (for trials; tests start
    their own), at the path of the peer's endpoint URL in GRIDBUS_SOAP_PEERS."""
    from urllib.parse import urlsplit

    from gridbus.adapters.soap_stub import run_stub
    from gridbus.contracts.soap import peer_wsdl

    peers = context.settings().soap_peers
    if peer not in peers:
        known = ", ".join(sorted(peers))
        raise click.BadParameter(f"{peer!r} is not a SOAP peer; choose from {known}", param_hint="PEER")
    endpoint = urlsplit(peers[peer])
    if port is None:
        port = endpoint.port if endpoint.port is not None else 80
    run_stub(peer_wsdl(peer), port, endpoint.path or f"/{peer}")


def _register_ops() -> None:
    from gridbus.tools import commands, dlq_cli
    from gridbus.tools.console.commands import console

    for command in (dlq_cli.dlq, dlq_cli.audit, commands.simulate, commands.trace, console):
        main.add_command(command)
    topology_group.add_command(commands.users)


_register_ops()
