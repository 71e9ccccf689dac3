"""gridbus's AMQP client, the one place that works below py-amqp's and kombu's public API.

- ``connections``: which py-amqp the fast path may run on, connections to the broker's nodes,
  heartbeats for a busy owner;
- ``transport``: the buffered TCP transport and the kombu transport that uses it;
- ``deliveries``: ``AmqpDelivery`` and the frame handler that decodes deliveries;
- ``publisher``: the confirming publisher;
- ``frames``, ``template``, ``encoding``: basic.publish frames encoded as py-amqp writes them;
- ``memory``: the delay queues' TTL and dead-lettering, done by the worker on ``memory://``.

The fast path (``GRIDBUS_AMQP_FAST_PATH``) is the buffered transport, the frame handler and the
publish frames; without it gridbus runs on py-amqp's public API alone.
"""

from gridbus.workers.amqp.connections import (
    TESTED_AMQP, BrokerNodes, KeepAlive, NoNodeAnswered, broker_nodes, connect, fast_path_refusal, is_amqp, mask_url,
)
from gridbus.workers.amqp.deliveries import AmqpDelivery, deliveries_frame_handler
from gridbus.workers.amqp.frames import OversizedEnvelope, PublishFrames
from gridbus.workers.amqp.memory import DelayEmulation
from gridbus.workers.amqp.publisher import ConfirmTimeout, Publisher
from gridbus.workers.amqp.template import PublishTemplate
from gridbus.workers.amqp.transport import BufferedTCPTransport

__all__ = [
    "TESTED_AMQP", "AmqpDelivery", "BrokerNodes", "BufferedTCPTransport", "ConfirmTimeout", "DelayEmulation",
    "KeepAlive", "NoNodeAnswered", "OversizedEnvelope", "Publisher", "PublishFrames", "PublishTemplate",
    "broker_nodes", "connect", "deliveries_frame_handler", "fast_path_refusal", "is_amqp", "mask_url",
]
