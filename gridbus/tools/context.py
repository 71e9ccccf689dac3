"""The settings of one command line: read once, when the ``gridbus`` command starts, and kept on
the click context; invalid settings end the command with one line naming each variable."""

from __future__ import annotations

import click

from gridbus.workers.settings import Settings, SettingsError, load_settings


def settings(**urls: str | None) -> Settings:
    """The command line's settings; ``broker=``/``store=`` override ``GRIDBUS_BROKER_URL``/``_STORE_URL``."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is None:
        base = _load()
    else:
        if root.obj is None:
            root.obj = {}
        base = root.obj.get("settings")
        if base is None:
            base = root.obj["settings"] = _load()
    update = {f"{name}_url": url for name, url in urls.items() if url is not None}
    return base.model_copy(update=update) if update else base


def _load() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        click.echo(f"gridbus: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
