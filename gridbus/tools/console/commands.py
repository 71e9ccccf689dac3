"""``gridbus console``: serve the console; ``gridbus console user add|remove|list``: its accounts."""

from __future__ import annotations

import sys

import click

from gridbus.tools.console.accounts import ROLES, AccountError, Accounts
from gridbus.tools.context import settings

_store_option = click.option("--store", "store_url", default=None, help="Store URL; overrides GRIDBUS_STORE_URL.")


@click.group("console", invoke_without_command=True)
@click.option("--host", default=None, help="Listen address; overrides GRIDBUS_CONSOLE_HOST.")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port; overrides GRIDBUS_CONSOLE_PORT.")
@click.option("--broker", default=None, help="AMQP URL; overrides GRIDBUS_BROKER_URL.")
@_store_option
@click.pass_context
def console(ctx: click.Context, host, port, broker, store_url) -> None:
    """Serve the dead-letter console (a web application on one port) until SIGTERM; its
    accounts are managed with `gridbus console user`."""
    if ctx.invoked_subcommand is not None:
        return
    from gridbus.tools.console.server import serve
    from gridbus.workers import logging as gridbus_logging

    s = settings(broker=broker, store=store_url)
    gridbus_logging.configure(s.log_format, s.log_level)
    serve(s, host=host, port=port)


@console.group("user")
def user() -> None:
    """The console's local accounts (roles: viewer reads; operator replays and edits; admin purges)."""


def _accounts(store_url: str | None):
    from gridbus.workers.store.db import Database

    db = Database(store_url or settings().store_url)
    return db, Accounts(db)


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the account may do.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@_store_option
def user_add(name, role, password_stdin, store_url) -> None:
    """Create the account NAME, or give it a new role and password (asked for twice, not echoed)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    db, accounts = _accounts(store_url)
    try:
        created = accounts.add(name, role, password)
    except AccountError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        db.close()
    click.echo(f"{'created' if created else 'updated'} {name} ({role})")


@user.command("remove")
@click.argument("name")
@_store_option
def user_remove(name, store_url) -> None:
    """Remove the account NAME: its sessions end at their next request."""
    db, accounts = _accounts(store_url)
    try:
        removed = accounts.remove(name)
    finally:
        db.close()
    if not removed:
        click.echo(f"no account named {name!r}", err=True)
        raise SystemExit(1)
    click.echo(f"removed {name}")


@user.command("list")
@_store_option
def user_list(store_url) -> None:
    """Every account and its role."""
    db, accounts = _accounts(store_url)
    try:
        for account in accounts.all():
            click.echo(f"{account.name}\t{account.role}")
    finally:
        db.close()
