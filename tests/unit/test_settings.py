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


def test_soap_peers_default_to_the_loopback_stubs(monkeypatch):
    monkeypatch.delenv("GRIDBUS_SOAP_PEERS", raising=False)
    assert load_settings().soap_peers == {"cmd": "http://127.0.0.1:8081/cmd", "tc": "http://127.0.0.1:8082/tc"}


@pytest.mark.parametrize(
    "value",
    [
        "tc=https://tc.example:8443/soap",
        " tc = https://tc.example:8443/soap , ",
        '{"tc": "https://tc.example:8443/soap"}',
    ],
)
def test_naming_one_peer_keeps_the_others_defaults(monkeypatch, value):
    monkeypatch.setenv("GRIDBUS_SOAP_PEERS", value)
    assert load_settings().soap_peers == {"cmd": "http://127.0.0.1:8081/cmd", "tc": "https://tc.example:8443/soap"}


def test_both_peers_in_pairs_form(monkeypatch):
    monkeypatch.setenv("GRIDBUS_SOAP_PEERS", "cmd=http://cmd.example/c?a=1,tc=http://10.0.0.7:8082/tc")
    assert load_settings().soap_peers == {"cmd": "http://cmd.example/c?a=1", "tc": "http://10.0.0.7:8082/tc"}


def test_blank_soap_peers_is_the_defaults(monkeypatch):
    monkeypatch.setenv("GRIDBUS_SOAP_PEERS", "")
    assert load_settings().soap_peers == {"cmd": "http://127.0.0.1:8081/cmd", "tc": "http://127.0.0.1:8082/tc"}


def test_soap_peers_given_in_code_merge_too():
    assert load_settings(soap_peers={"cmd": "http://127.0.0.1:9/cmd"}).soap_peers["tc"] == "http://127.0.0.1:8082/tc"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Cmd=http://a/cmd", "'Cmd' is not a SOAP peer name (a lowercase identifier"),
        ("tc.x=http://a/tc", "'tc.x' is not a SOAP peer name"),
        ("billing=http://a/b", "SOAP peer 'billing' has no WSDL: it needs one *.wsdl in contracts/billing/; "
                               "the peers with a WSDL are cmd, tc"),
        ("cmd=ftp://a/cmd", "the URL of peer 'cmd' must be http:// or https:// with a host, not 'ftp://a/cmd'"),
        ("cmd=http:///cmd", "the URL of peer 'cmd' must be http:// or https:// with a host"),
        ("cmd=http://a:99999/cmd", "the URL of peer 'cmd' must be http:// or https:// with a host"),
        ("cmd=", "the URL of peer 'cmd' must be http:// or https:// with a host, not ''"),
        ("cmd", "'cmd' is not peer=URL"),
        ("cmd=http://a/1,cmd=http://a/2", "peer 'cmd' is named twice"),
        ('{"cmd": ', "not a JSON object"),
        ('{"cmd": 8081}', 'peer=URL pairs separated by commas, or a JSON object {"cmd": "http://..."}, are accepted'),
    ],
)
def test_a_bad_soap_peers_value_is_named_in_one_line(monkeypatch, value, reason):
    monkeypatch.setenv("GRIDBUS_SOAP_PEERS", value)
    message = str(pytest.raises(SettingsError, load_settings).value)
    assert "\n" not in message
    assert message.startswith(f"invalid settings: GRIDBUS_SOAP_PEERS={value}: ")
    assert reason in message


def test_a_soap_peer_without_a_wsdl_stops_a_command_before_it_starts(tmp_path):
    env = {**os.environ, "GRIDBUS_SOAP_PEERS": "billing=http://127.0.0.1:8083/billing"}
    done = subprocess.run([sys.executable, "-m", "gridbus", "stub", "billing"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "gridbus: invalid settings: GRIDBUS_SOAP_PEERS=billing=http://127.0.0.1:8083/billing: SOAP peer 'billing' "
        "has no WSDL: it needs one *.wsdl in contracts/billing/; the peers with a WSDL are cmd, tc"
    )


def test_market_categories_are_a_setting_of_known_codes(monkeypatch):
    assert load_settings().rules().market.eligible("large_industrial")
    monkeypatch.setenv("GRIDBUS_MARKET_CATEGORIES", "large_industrial, residential")
    market = load_settings().rules().market
    assert market.eligible("residential") and not market.eligible("general_commercial_industrial")
    monkeypatch.setenv("GRIDBUS_MARKET_CATEGORIES", "large_industrial,street_lighting")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "GRIDBUS_MARKET_CATEGORIES" in str(caught.value) and "unknown metering categories street_lighting" in str(caught.value)


def test_the_metrics_port_and_the_webhook_are_off_unless_set(monkeypatch):
    monkeypatch.setenv("GRIDBUS_METRICS_PORT", " ")
    monkeypatch.setenv("GRIDBUS_ALERT_WEBHOOK_URL", "")
    settings = load_settings()
    assert settings.metrics_port is None and settings.alert_webhook_url is None


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("GRIDBUS_METRICS_PORT", "70000", "less than or equal to 65535"),
        ("GRIDBUS_ALERT_WEBHOOK_URL", "file:///etc/passwd", "an http:// or https:// URL with a host is accepted"),
        ("GRIDBUS_ALERT_INTERVAL_MIN", "0", "greater than 0"),
    ],
)
def test_an_unusable_metrics_or_webhook_setting_is_named(monkeypatch, name, value, said):
    monkeypatch.setenv(name, value)
    reason = str(pytest.raises(SettingsError, load_settings).value)
    assert reason.startswith(f"invalid settings: {name}=") and said in reason
