"""One RabbitMQ user per upstream system, allowed to publish to its own exchange and nothing else.

The user of a system is named by ``GRIDBUS_SOURCE_USERS`` (``Settings.source_user_names``), by
default the system code (``mkt``, ``pms``...); it is the string the system's routes expect in the
``user_id`` property. Since RabbitMQ refuses a ``user_id`` that is not the connection's user,
and the user can write only to ``<system>.out``, a message on a route's work queue that names
pms's user was published by whoever holds that user's password.

Users are managed with ``rabbitmqctl`` (needs to run where the broker node's Erlang cookie is
readable, typically as root or the rabbitmq user). Passwords go to rabbitmqctl on standard input,
never on its command line.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Iterable, Mapping

from gridbus.contracts import naming

#: Nothing to configure (declare/delete) and nothing to read: upstream systems only publish.
CONFIGURE_PERMISSION = "^$"
READ_PERMISSION = "^$"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class UserSetupError(Exception):
    """rabbitmqctl is missing or refused; the message carries its output and what to do."""


class _Refused(UserSetupError):
    """rabbitmqctl ran and answered with an error (``returncode``)."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


#: rabbitmqctl's exit status for refused credentials (EX_DATAERR); others mean it could not ask.
_INVALID_CREDENTIALS = 65


@dataclass(frozen=True)
class SystemUser:
    """A system's RabbitMQ user. ``password`` is None when an existing user kept its password."""

    system: str
    username: str
    password: str | None
    generated: bool
    created: bool


def write_permission(system: str) -> str:
    """Regular expression of the exchanges ``system`` may publish to: its own, exactly."""
    return f"^{re.escape(naming.system_exchange(system))}$"


def ensure_system_users(
    vhost: str,
    systems: Iterable[str],
    passwords: Mapping[str, str] | None = None,
    *,
    usernames: Mapping[str, str] | None = None,
    reset_passwords: bool = False,
    rabbitmqctl: str = "rabbitmqctl",
    timeout_s: float = 60.0,
) -> list[SystemUser]:
    """Create or update the user of each system and set its permissions in ``vhost``.

    passwords: system code -> password, set on the user whether it is new or not.
    usernames: system code -> user name (default: the system code).
    reset_passwords: an existing user without a given password gets a new generated one;
        otherwise it keeps its own (``SystemUser.password`` None). New users without a given
        password always get a generated one, returned once in ``SystemUser.password``.
    """
    ctl = _Ctl(rabbitmqctl, timeout_s)
    passwords = passwords or {}
    usernames = usernames or {}
    existing = ctl.users()
    result = []
    for system in dict.fromkeys(systems):
        username = usernames.get(system, system)
        password = passwords.get(system)
        created = username not in existing
        generated = False
        if password is None and (created or reset_passwords):
            password, generated = secrets.token_urlsafe(24), True
        if created:
            ctl.run("add_user", username, stdin=password)
        elif password is not None:
            ctl.run("change_password", username, stdin=password)
        ctl.run(
            "set_permissions", "-p", vhost, username, CONFIGURE_PERMISSION, write_permission(system), READ_PERMISSION
        )
        result.append(SystemUser(system, username, password, generated, created))
    return result


def password_is_valid(
    username: str, password: str, *, rabbitmqctl: str = "rabbitmqctl", timeout_s: float = 60.0
) -> bool:
    """Whether RabbitMQ accepts ``password`` for ``username`` (``rabbitmqctl authenticate_user``)."""
    try:
        _Ctl(rabbitmqctl, timeout_s).run("authenticate_user", username, stdin=password)
    except _Refused as exc:
        if exc.returncode == _INVALID_CREDENTIALS:
            return False
        raise
    return True


def delete_users(usernames: Iterable[str], *, rabbitmqctl: str = "rabbitmqctl", timeout_s: float = 60.0) -> None:
    """Delete these users if they exist (for tests and decommissioning)."""
    ctl = _Ctl(rabbitmqctl, timeout_s)
    existing = ctl.users()
    for username in usernames:
        if username in existing:
            ctl.run("delete_user", username)


class _Ctl:
    def __init__(self, executable: str, timeout_s: float):
        path = shutil.which(executable)
        if path is None:
            raise UserSetupError(
                f"{executable} not found on PATH: run this on the RabbitMQ host (as root or the rabbitmq user), "
                "or create the users there with rabbitmqctl add_user / set_permissions"
            )
        self.path = path
        self.timeout_s = timeout_s

    def users(self) -> set[str]:
        out = self.run("list_users", "--quiet", "--formatter", "json")
        try:
            return {entry["user"] for entry in json.loads(out or "[]")}
        except (ValueError, KeyError, TypeError) as exc:
            raise UserSetupError(f"unexpected output of rabbitmqctl list_users: {out[:200]!r}") from exc

    def run(self, *args: str, stdin: str | None = None) -> str:
        # Passwords are never part of args: they would show in the process list.
        shown = " ".join(args)
        # No pipes: rabbitmqctl's helper processes can outlive it and hold a pipe open, so output
        # goes to files, and the whole process group is killed on timeout.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as given:
            if stdin is not None:
                given.write((stdin + "\n").encode())
                given.seek(0)
            proc = subprocess.Popen([self.path, *args], stdin=given, stdout=out, stderr=err, start_new_session=True)
            try:
                returncode = proc.wait(self.timeout_s)
            except subprocess.TimeoutExpired as exc:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise UserSetupError(
                    f"rabbitmqctl {shown} did not finish within {self.timeout_s:g} s: is the node up?"
                ) from exc
            out.seek(0)
            err.seek(0)
            done = subprocess.CompletedProcess(
                proc.args, returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace")
            )
        if done.returncode != 0:
            detail = _ANSI.sub("", done.stderr.strip() or done.stdout.strip()).splitlines()
            raise _Refused(
                f"rabbitmqctl {shown} failed (exit {done.returncode}): {' '.join(detail)[:500]}"
                " — check that the node is running and that this account may run rabbitmqctl",
                done.returncode,
            )
        return done.stdout
