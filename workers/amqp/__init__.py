"""gridbus's AMQP client: connections to the broker's nodes, the confirming publisher, and the
fast path below py-amqp's public API (``GRIDBUS_AMQP_FAST_PATH``)."""

from gridbus.workers.amqp.publisher import (
    TESTED_AMQP,
    AmqpDelivery,
    BrokerNodes,
    ConfirmTimeout,
    KeepAlive,
    NoNodeAnswered,
    OversizedEnvelope,
    Publisher,
    PublishFrames,
    PublishTemplate,
    broker_nodes,
    connect,
    deliveries_frame_handler,
    fast_path_refusal,
    is_amqp,
    mask_url,
)

__all__ = [
    "TESTED_AMQP", "AmqpDelivery", "BrokerNodes", "ConfirmTimeout", "KeepAlive", "NoNodeAnswered",
    "OversizedEnvelope", "Publisher", "PublishFrames", "PublishTemplate", "broker_nodes", "connect",
    "deliveries_frame_handler", "fast_path_refusal", "is_amqp", "mask_url",
]
