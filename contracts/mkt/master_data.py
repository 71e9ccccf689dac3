"""MktMasterDataChanged: the customer-service platform (marketing) changed one master-data object.

Flow 10, mkt -> data middle platform. Routing key ``master-data.changed`` on ``mkt.out``. JSON as
every marketing contract (``contracts/mkt/base.py``), with the fields of ``contracts.master_data``
shared with PMS's XML contract. Example: ``contracts/examples/mkt.MasterDataChanged.json``.

Imported by its module path, not from ``gridbus.contracts.mkt``: ``contracts.master_data`` builds
on ``contracts.mkt.base``, so the package cannot import it back at its start.
"""

from __future__ import annotations

from typing import ClassVar

from gridbus.contracts.master_data import MasterDataChange
from gridbus.contracts.mkt.base import JsonInbound


class MktMasterDataChanged(JsonInbound, MasterDataChange):
    system: ClassVar[str] = "mkt"
