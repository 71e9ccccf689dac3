"""A SOAP peer is its WSDL in ``contracts/<peer>/`` plus an endpoint URL in GRIDBUS_SOAP_PEERS:
one adapter per configured peer, and a route whose peer has no URL stops the start-up."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridbus.adapters.soap import build_soap_adapters
from gridbus.contracts import CONTRACTS_DIR
from gridbus.contracts.soap import peer_wsdl, soap_peer_wsdls
from gridbus.routes import ROUTES
from gridbus.routes.model import Route, Source, Step, Target
from gridbus.workers import bootstrap
from gridbus.workers.bootstrap import build_lanes, check_soap_targets
from gridbus.workers.settings import Settings
from tests.support.routes import Note


@dataclass
class Peers:
    """The adapters' own ``PeerSettings``, without the rest of the settings."""

    soap_peers: dict[str, str]
    soap_timeout_s: float = 3.0
    soap_username: str | None = None
    soap_password: str | None = None


def test_each_peer_has_the_one_wsdl_of_its_folder():
    assert peer_wsdl("cmd") == CONTRACTS_DIR / "cmd" / "CommandCenterService.wsdl"
    assert peer_wsdl("tc") == CONTRACTS_DIR / "tc" / "TradingCenterService.wsdl"
    assert soap_peer_wsdls() == {"cmd": peer_wsdl("cmd"), "tc": peer_wsdl("tc")}


def test_a_new_peer_is_found_by_its_folder(tmp_path):
    shutil.copytree(CONTRACTS_DIR / "tc", tmp_path / "tc")
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "BillingService.wsdl").write_text("<definitions/>")
    (tmp_path / "examples").mkdir()  # a folder without a WSDL is no peer
    assert soap_peer_wsdls(tmp_path) == {
        "billing": tmp_path / "billing" / "BillingService.wsdl",
        "tc": tmp_path / "tc" / "TradingCenterService.wsdl",
    }


def test_a_folder_with_no_wsdl_or_two_is_refused_naming_the_peer(tmp_path):
    (tmp_path / "billing").mkdir()
    with pytest.raises(ValueError, match=r"SOAP peer 'billing' has no WSDL: it needs one \*\.wsdl in contracts/billing/"):
        peer_wsdl("billing", tmp_path)
    for name in ("B1.wsdl", "B2.wsdl"):
        (tmp_path / "billing" / name).write_text("<definitions/>")
    with pytest.raises(ValueError, match=r"SOAP peer 'billing' has 2 WSDLs in contracts/billing/ \(B1.wsdl, B2.wsdl\)"):
        peer_wsdl("billing", tmp_path)
    with pytest.raises(ValueError, match="2 WSDLs"):
        soap_peer_wsdls(tmp_path)


@pytest.mark.parametrize("name", ["Cmd", "../tc", "tc/", "", "1cmd", "c-md"])
def test_only_a_lowercase_identifier_names_a_peer(name):
    with pytest.raises(ValueError, match="is not a SOAP peer name"):
        peer_wsdl(name)


def test_one_adapter_per_configured_peer_on_its_wsdl():
    adapters = build_soap_adapters(Peers({"tc": "https://tc.example/soap"}))
    [tc] = adapters.values()
    assert (tc.name, tc.wsdl_path, tc.endpoint_url, tc.timeout_s) == ("tc", peer_wsdl("tc"), "https://tc.example/soap", 3.0)


def test_a_configured_peer_without_a_wsdl_is_not_built():
    with pytest.raises(ValueError, match="SOAP peer 'billing' has no WSDL"):
        build_soap_adapters(Peers({"billing": "http://127.0.0.1:8083/billing"}))


BILLING = Route(
    name="tests.billing",
    source=Source(system="mdc", routing_key="note.billed"),
    contract=Note,
    steps=(Step("bill", lambda note, ctx: note, Target("billing", "ReceiveBill")),),
)


def test_a_route_calling_a_peer_without_an_url_is_refused_naming_it():
    wsdls = {**soap_peer_wsdls(), "billing": Path("/contracts/billing/BillingService.wsdl")}
    with pytest.raises(ValueError) as caught:
        check_soap_targets((*ROUTES, BILLING), {"cmd", "tc", "mkt", "events"}, wsdls)
    assert str(caught.value) == (
        "route tests.billing, step bill: SOAP peer 'billing' (contracts/billing/BillingService.wsdl) "
        "has no endpoint URL: add billing=http://... to GRIDBUS_SOAP_PEERS"
    )
    check_soap_targets((*ROUTES, BILLING), {"cmd", "tc", "mkt", "events", "billing"}, wsdls)
    check_soap_targets(ROUTES, {"cmd", "tc", "mkt", "events"}, wsdls)


def test_the_worker_does_not_start_with_such_a_route(tmp_path, monkeypatch):
    """A new peer's WSDL is in contracts/ but GRIDBUS_SOAP_PEERS has no URL for it (no default either)."""
    wsdls = {**soap_peer_wsdls(), "billing": tmp_path / "billing" / "BillingService.wsdl"}
    monkeypatch.setattr(bootstrap, "soap_peer_wsdls", lambda: wsdls)
    settings = Settings(store_url=f"sqlite:///{tmp_path}/store.sqlite3")
    with pytest.raises(ValueError, match="SOAP peer 'billing' .* has no endpoint URL"):
        build_lanes(settings, (*ROUTES, BILLING))
