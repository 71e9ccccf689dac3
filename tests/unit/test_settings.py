"""Invalid settings end gridbus at start-up with one line naming each variable, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gridbus.workers.settings import SettingsError, load_settings

BAD = {"GRIDBUS_LOG_LEVEL": "LOUD", "GRIDBUS_LOG_FORMAT": "xml", "GRIDBUS_BATCH_SIZE": "-5"}


def test_each_invalid_setting_is_named_with_what_it_accepts(monkeypatch):
    for name, value in BAD.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    reason = str(caught.value)
    assert "\n" not in reason
    assert "GRIDBUS_LOG_LEVEL=LOUD: one of DEBUG, INFO, WARNING, ERROR, CRITICAL is accepted" in reason
    assert "GRIDBUS_LOG_FORMAT=xml: Input should be 'json' or 'console'" in reason
    assert "GRIDBUS_BATCH_SIZE=-5: Input should be greater than or equal to 1" in reason


def test_a_level_in_any_case_is_accepted(monkeypatch):
    monkeypatch.setenv("GRIDBUS_LOG_LEVEL", "warning")
    assert load_settings().log_level == "WARNING"


def test_a_value_is_shown_printable_and_bounded(monkeypatch):
    monkeypatch.setenv("GRIDBUS_LOG_FORMAT", "x\x1b[2J" + "y" * 500)
    reason = str(pytest.raises(SettingsError, load_settings).value)
    assert "\x1b" not in reason and len(reason) < 300


@pytest.mark.parametrize("command", [["worker"], ["dlq", "list"], ["demo"]])
def test_every_command_stops_before_it_starts(command, tmp_path):
    env = {**os.environ, **BAD}
    done = subprocess.run([sys.executable, "-m", "gridbus", *command], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gridbus: invalid settings: ")
    assert all(name in lines[0] for name in BAD)
    assert "Traceback" not in done.stderr and done.stdout == ""
