"""``gridbus console`` as an operator runs it: accounts made with ``gridbus console user``, the
console served by the real command on a port, a login over HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import requests
from click.testing import CliRunner

from gridbus.tools.cli import main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_user_add_list_remove(tmp_path):
    store = f"sqlite:///{tmp_path}/store.sqlite3"
    runner = CliRunner()
    added = runner.invoke(main, ["console", "user", "add", "ada", "--role", "admin", "--password-stdin",
                                 "--store", store], input="a-long-enough-password\n")
    assert added.exit_code == 0 and added.output == "created ada (admin)\n"
    again = runner.invoke(main, ["console", "user", "add", "ada", "--role", "viewer", "--store", store],
                          input="another-long-password\nanother-long-password\n")
    assert again.exit_code == 0 and again.output.endswith("updated ada (viewer)\n")
    short = runner.invoke(main, ["console", "user", "add", "bob", "--role", "viewer", "--password-stdin",
                                 "--store", store], input="short\n")
    assert short.exit_code == 2 and "at least 12 characters" in short.output
    listed = runner.invoke(main, ["console", "user", "list", "--store", store])
    assert listed.output == "ada\tviewer\n"
    assert runner.invoke(main, ["console", "user", "remove", "ada", "--store", store]).exit_code == 0
    assert runner.invoke(main, ["console", "user", "remove", "ada", "--store", store]).exit_code == 1


def test_the_command_serves_the_console_and_an_account_logs_in(tmp_path, broker_url):
    store = f"sqlite:///{tmp_path}/store.sqlite3"
    CliRunner().invoke(main, ["console", "user", "add", "otto", "--role", "operator", "--password-stdin",
                              "--store", store], input="operator-password-1\n")
    port = free_port()
    env = {**os.environ, "GRIDBUS_STORE_URL": store, "GRIDBUS_BROKER_URL": broker_url,
           "GRIDBUS_CONSOLE_SECRET": "x" * 40, "GRIDBUS_LOG_FORMAT": "json"}
    proc = subprocess.Popen([sys.executable, "-m", "gridbus", "console", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        session = requests.Session()
        deadline = time.monotonic() + 30
        while True:
            try:
                login = session.get(url + "/login", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "the console did not start"
                time.sleep(0.1)
        token = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
        signed_in = session.post(url + "/login", data={"name": "otto", "password": "operator-password-1",
                                                       "csrf": token, "next": "/dead-letters"})
        assert signed_in.status_code == 200 and signed_in.url == url + "/dead-letters"
        assert "otto" in signed_in.text and "Dead letters" in signed_in.text
        set_cookie = signed_in.history[0].headers["set-cookie"].lower()
        assert "gridbus_console=" in set_cookie and "httponly" in set_cookie and "samesite=strict" in set_cookie
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0].decode()
    # uvicorn finishes the requests in hand, then ends by the signal it was sent
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "console.serving" in output and "operator-password-1" not in output
