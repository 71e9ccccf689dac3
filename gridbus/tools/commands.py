"""Operator commands: ``gridbus simulate``, ``gridbus topology users``, ``gridbus trace`` (``gridbus dlq``
and ``gridbus audit`` are in ``dlq_cli``).

Exit codes: 0 done; 1 the broker or rabbitmqctl refused, some messages could not be handled, or
some credentials could not be saved (the output says which); 2 the command line is incomplete or
unsafe (e.g. purge without ``--yes-i-am-sure``).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import click
from kombu import Connection

from gridbus.tools import simulate as simulation
from gridbus.tools import users as system_users
from gridbus.tools.context import settings

_broker_option = click.option("--broker", default=None, help="AMQP URL; overrides GRIDBUS_BROKER_URL.")
_routes_option = click.option(
    "--routes-module", default=None, help="module:ATTRIBUTE of the routes (default gridbus.routes:ROUTES)."
)


def _broker_url(broker: str | None) -> str:
    return broker or settings().broker_url


def _routes(routes_module: str | None, names=()) -> tuple:
    """The routes: from the click context object when a caller put them there, else the routes module."""
    ctx = click.get_current_context()
    if ctx.obj and "routes" in ctx.obj:
        routes = tuple(ctx.obj["routes"])
        known = {r.name for r in routes}
        missing = [n for n in names if n not in known]
        if missing:
            raise click.BadParameter(
                f"no route named {', '.join(missing)}; known: {', '.join(known)}", param_hint="--route"
            )
        return tuple(r for r in routes if not names or r.name in names)
    from gridbus.workers.bootstrap import load_routes

    try:
        return load_routes(routes_module, names)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--route") from exc


def _table(rows: list[tuple], header: tuple) -> str:
    rows = [tuple("" if c is None else str(c) for c in row) for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


# --- simulate ------------------------------------------------------------------------------------


@click.command("simulate")
@click.option("--route", "route_names", multiple=True, help="Only these routes (default: all).")
@click.option(
    "--count", default=None, type=click.IntRange(min=1), help="Publish N variants per route (default: the example)."
)
@click.option(
    "--system-password",
    "system_passwords",
    multiple=True,
    metavar="SYSTEM=PASSWORD",
    help="Password of a system's RabbitMQ user (repeatable), e.g. pms=secret.",
)
@click.option(
    "--credentials-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON written by `gridbus topology users --save`: {system: [user, password]}.",
)
@click.option("--as-guest", is_flag=True, help="Publish as the broker URL's user; routes refuse these as unauthorised.")
@click.option(
    "--readings-size", default=None, type=click.IntRange(1, 10_000),
    help="Readings parts of N records (flow 9) instead of the example; --count parts of one batch.",
)
@click.option(
    "--bad-share", default=0.0, show_default=True, type=click.FloatRange(0, 1),
    help="With --readings-size: the share of bad records in each part (0..1).",
)
@click.option(
    "--examples-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=simulation.EXAMPLES_DIR,
    show_default=True,
)
@_broker_option
@_routes_option
def simulate(
    route_names, count, system_passwords, credentials_file, as_guest, readings_size, bad_share, examples_dir, broker,
    routes_module,
):
    """Publish the routes' example messages as the upstream systems would (pika, confirms, user_id)."""
    routes = _routes(routes_module, route_names)
    broker_url = _broker_url(broker)
    usernames = settings().source_user_names()
    credentials = {} if as_guest else _credentials(credentials_file, system_passwords, usernames)
    if as_guest:
        user = Connection(broker_url).userid or "guest"
        click.echo(
            f"publishing as {user!r}, not as the systems' own users: every route accepts only user_id = its "
            "system's user (GRIDBUS_SOURCE_USERS), so these messages will be dead-lettered as unauthorised",
            err=True,
        )
    else:
        systems = sorted({r.source.system for r in routes if not r.source.internal})
        missing = [s for s in systems if s not in credentials]
        if missing:
            raise click.UsageError(
                f"no password for the system user(s) {', '.join(missing)}: pass --system-password SYSTEM=PASSWORD "
                "or --credentials-file (create the users with `gridbus topology users`), or --as-guest to publish "
                "as the broker URL's user (the routes will refuse those messages as unauthorised)"
            )
        other = [
            f"{s} as {credentials[s][0]!r}, not {usernames[s]!r}" for s in systems if credentials[s][0] != usernames[s]
        ]
        if other:
            raise click.UsageError(
                f"the credentials name other users than GRIDBUS_SOURCE_USERS: {'; '.join(other)}; the routes would "
                "refuse those messages as unauthorised (set GRIDBUS_SOURCE_USERS, or save the credentials again "
                "with `gridbus topology users --save`)"
            )
    generators = {}
    if readings_size is not None:
        from functools import partial

        from gridbus.tools.readings_batch import simulated_parts

        generators["DailyFrozenPublished"] = partial(simulated_parts, size=readings_size, bad_share=bad_share)
    report = simulation.simulate(
        broker_url, routes, count=count, examples_dir=examples_dir, user_credentials=credentials or None,
        generators=generators,
    )
    rows = [
        (r.route, r.user, r.exchange, r.routing_key, r.published, r.error or r.skipped or "ok") for r in report.routes
    ]
    click.echo(_table(rows, ("ROUTE", "AS USER", "EXCHANGE", "ROUTING KEY", "PUBLISHED", "NOTE")))
    click.echo(f"\n{report.published} message(s) published and confirmed")
    if not report.ok:
        raise SystemExit(1)


def _credentials(path: Path | None, pairs, usernames: dict[str, str]) -> dict[str, tuple[str, str]]:
    """system -> (user, password): from a ``--save`` file, then ``SYSTEM=PASSWORD`` pairs for the
    systems' users (``usernames``, from ``GRIDBUS_SOURCE_USERS``)."""
    credentials = _stored_credentials(path) if path is not None else {}
    for pair in pairs:
        system, sep, password = pair.partition("=")
        if not sep or not system:
            raise click.BadParameter(f"expected SYSTEM=PASSWORD, got {pair!r}", param_hint="--system-password")
        credentials[system] = (usernames.get(system, system), password)
    return credentials


def _stored_credentials(path: Path) -> dict[str, tuple[str, str]]:
    try:
        stored = json.loads(path.read_text())
        credentials = {}
        for system, value in stored.items():
            user, password = (system, value) if isinstance(value, str) else value
            credentials[system] = (str(user), str(password))
        return credentials
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise click.BadParameter(f"{path}: expected {{system: [user, password]}}: {exc}") from exc


# --- topology users ------------------------------------------------------------------------------


@click.command("users")
@click.option("--system", "systems", multiple=True, help="Only these systems (default: every route's source system).")
@click.option(
    "--system-password",
    "system_passwords",
    multiple=True,
    metavar="SYSTEM=PASSWORD",
    help="Set this password (repeatable); otherwise new users get a generated one, existing ones keep theirs.",
)
@click.option("--vhost", default=None, help="Virtual host for the permissions (default: the broker URL's).")
@click.option(
    "--save",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the systems' credentials to this JSON file (mode 0600) for `gridbus simulate --credentials-file`: "
    "the passwords set now, and those already in the file that RabbitMQ still accepts.",
)
@click.option(
    "--reset-passwords",
    is_flag=True,
    help="Give existing users a new generated password too (unless --system-password gives one); "
    "their systems must then use the new one.",
)
@_broker_option
@_routes_option
def users(systems, system_passwords, vhost, save, reset_passwords, broker, routes_module) -> None:
    """Create the RabbitMQ user of each upstream system (GRIDBUS_SOURCE_USERS, default the system
    code), allowed to publish to its own exchange only."""
    if not systems:
        systems = sorted({r.source.system for r in _routes(routes_module) if not r.source.internal})
    usernames = settings().source_user_names()
    passwords = {system: password for system, (_, password) in _credentials(None, system_passwords, usernames).items()}
    vhost = vhost or Connection(_broker_url(broker)).virtual_host or "/"
    try:
        created = system_users.ensure_system_users(
            vhost, systems, passwords, usernames=usernames, reset_passwords=reset_passwords
        )
        saved = _save_known(save, created) if save is not None else None
    except system_users.UserSetupError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = []
    for u in created:
        shown = u.password if u.generated else ("(as given)" if u.password else "(unchanged)")
        action = "created" if u.created else "updated"
        rows.append((u.system, u.username, action, system_users.write_permission(u.system), shown))
    click.echo(_table(rows, ("SYSTEM", "USER", "", "MAY WRITE TO", "PASSWORD")))
    if any(u.generated for u in created):
        click.echo("\ngenerated passwords are shown only this once: store them in the systems' configuration now")
    if saved is None:
        return
    written, kept, unknown = saved
    click.echo(f"credentials written to {save}: {', '.join(written + kept) or 'none'}")
    if kept:
        click.echo(f"  kept from the file (RabbitMQ still accepts them): {', '.join(kept)}")
    if unknown:
        click.echo(
            f"not saved: {', '.join(unknown)}: these users existed already and keep passwords gridbus does not know. "
            f"Give each with --system-password SYSTEM=PASSWORD, keep an earlier --save file at {save} "
            "({system: [user, password]}), or give them new ones with --reset-passwords (their systems must "
            "then use the new ones)",
            err=True,
        )
        raise SystemExit(1)


def _save_known(path: Path, created: list) -> tuple[list[str], list[str], list[str]]:
    """Write the passwords set now and keep the file's still-valid ones; returns the systems
    written, kept and unknown (each as ``system (user)``)."""
    stored = _stored_credentials(path) if path.exists() else {}
    fresh = {u.system: (u.username, u.password) for u in created if u.password}
    written, kept, unknown = [], [], []
    for u in created:
        label = f"{u.system} ({u.username})"
        if u.password:
            written.append(label)
            continue
        entry = stored.get(u.system)
        if entry and entry[0] == u.username and system_users.password_is_valid(*entry):
            kept.append(label)
        else:
            stored.pop(u.system, None)  # stale: another user's, or a password RabbitMQ refuses
            unknown.append(label)
    _save_credentials(path, {**stored, **fresh})
    return written, kept, unknown


def _save_credentials(path: Path, credentials: dict[str, tuple[str, str]]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.chmod(path, 0o600)  # also when the file existed with wider permissions
    with os.fdopen(fd, "w") as out:
        json.dump({system: list(pair) for system, pair in credentials.items()}, out, indent=2)


# --- trace ---------------------------------------------------------------------------------------


@click.command("trace")
@click.argument("key")
@click.option("--store", "store_url", default=None, help="Store URL; overrides GRIDBUS_STORE_URL.")
def trace(key, store_url) -> None:
    """The history of one business object, oldest first: a sales company by credit code, a retail
    user unit by its id, an agreement by its number. Every message that was read as its contract,
    with its outcome (delivered, superseded, retry scheduled, dead-lettered with the reason), every
    output sent to a system, every state change and schedule, across all routes. Repeats of a
    message id and messages that do not meet their contract are not here (their keys are unknown):
    see the worker's log and `gridbus dlq`."""
    from gridbus.workers.runtime import CHINA_TZ
    from gridbus.workers.store import Store

    from gridbus.mappings.readings.decision import batch_status

    store = Store(store_url or settings().store_url)
    try:
        rows = store.journal.trace(key)
        status = batch_status(store.state.view(), key)
    finally:
        store.close()
    if not rows:
        click.echo(f"nothing recorded under {key!r}")
        raise SystemExit(1)
    table = [
        (datetime.fromtimestamp(at, CHINA_TZ).isoformat(timespec="seconds"), event, route, message_id, detail)
        for at, event, route, message_id, detail in rows
    ]
    click.echo(_table(table, ("AT", "EVENT", "ROUTE", "MESSAGE", "DETAIL")))
    if status is not None:
        click.echo(status)
