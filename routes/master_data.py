"""Master-data changes (flow 10): both middle platforms -> the data middle platform (数据中台).

The grid-resource platform (PMS) sends XML, the customer-service platform (marketing) JSON; both
are judged by the same rules on the shared registry of business codes (``mappings.master_data.
rules``). Every change is answered on the sender's ``<system>.in``; accepted ones go on to the data
middle platform and as canonical events. Journalled for ``gridbus trace`` under the business code,
a relation's ends and the change order number.
"""

from __future__ import annotations

from gridbus.contracts.mkt.master_data import MktMasterDataChanged
from gridbus.contracts.pms.master_data import PmsMasterDataChanged
from gridbus.mappings.master_data import outputs, rules
from gridbus.routes.model import RetryPolicy, Route, Source, Step, Target

#: A relation sent before its ends waits for them about 5 minutes (10 s doubling to 2 min, 6
#: attempts), then is dead-lettered ``unknown-reference``; the inboxes' own outages get the same.
RETRY = RetryPolicy(attempts=6, first_delay_s=10, max_delay_s=120)

#: Routing keys on ``<system>.in`` and ``dmp.in``.
REPLY = "master-data.reply"
DATA_PLATFORM = "master-data.changed"


def _route(system: str, contract) -> Route:
    return Route(
        name=f"{system}.master-data-changed",
        source=Source(system=system, routing_key="master-data.changed"),
        contract=contract,
        decide=rules.decide,
        steps=(
            Step("reply", outputs.reply, Target(system, REPLY)),
            Step("dmp", outputs.data_platform, Target("dmp", DATA_PLATFORM)),
            Step("event", outputs.event, Target("events")),
        ),
        retry=RETRY,
        trace_keys=rules.trace_keys,
    )


PMS_MASTER_DATA_CHANGED = _route("pms", PmsMasterDataChanged)
MKT_MASTER_DATA_CHANGED = _route("mkt", MktMasterDataChanged)

ROUTES = (PMS_MASTER_DATA_CHANGED, MKT_MASTER_DATA_CHANGED)
