"""What every SOAP peer's contract shares.

A peer's WSDL is the one ``*.wsdl`` file in ``contracts/<peer>/``: the folder's name is the
peer's name, the adapter's name and the ``Target`` adapter its routes name, so a new peer needs
no table anywhere. Every request gridbus makes to a peer (``contracts/cmd/soap.py``,
``contracts/tc/soap.py``) carries the WSDL operation, and a header of ``MessageID`` (stable
across retries: the peer applies it once), ``CorrelationID`` and ``SentAt``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from gridbus.contracts import CONTRACTS_DIR
from gridbus.contracts.times import ChinaTime

#: A peer's name: a lowercase identifier, also the name of its folder under contracts/.
PEER_NAME = re.compile(r"[a-z][a-z0-9_]*")


def peer_wsdl(peer: str, root: Path = CONTRACTS_DIR) -> Path:
    """The WSDL of ``peer``: the only ``*.wsdl`` in ``root/<peer>/``; ValueError naming the peer otherwise."""
    if not PEER_NAME.fullmatch(peer):
        raise ValueError(f"{peer!r} is not a SOAP peer name (a lowercase identifier: a-z, 0-9, _)")
    found = sorted((root / peer).glob("*.wsdl"))
    if not found:
        raise ValueError(f"SOAP peer {peer!r} has no WSDL: it needs one *.wsdl in contracts/{peer}/")
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise ValueError(f"SOAP peer {peer!r} has {len(found)} WSDLs in contracts/{peer}/ ({names}): keep one")
    return found[0]


def soap_peer_wsdls(root: Path = CONTRACTS_DIR) -> dict[str, Path]:
    """Every peer that has a WSDL under ``root``, by name."""
    folders = sorted({path.parent.name for path in root.glob("*/*.wsdl")})
    return {peer: peer_wsdl(peer, root) for peer in folders}


class SoapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message_type: ClassVar[str]
    operation: ClassVar[str]

    message_id: str = Field(min_length=1)
    correlation_id: str
    sent_at: ChinaTime

    def _header(self) -> dict[str, Any]:
        return {"MessageID": self.message_id, "CorrelationID": self.correlation_id, "SentAt": self.sent_at}
