"""AMQP header names gridbus sets. They survive replay, so an operator always sees the history."""

ATTEMPT = "x-gridbus-attempt"  # 1-based delivery attempt of this message on its route
FIRST_FAILURE_AT = "x-gridbus-first-failure-at"  # ISO 8601, first failed attempt
LAST_FAILURE_AT = "x-gridbus-last-failure-at"  # ISO 8601, latest failed attempt
ERROR_TYPE = "x-gridbus-error-type"  # errors.GridbusError.kind, e.g. contract-violation
ERROR_MESSAGE = "x-gridbus-error"  # operator-facing reason
ROUTE = "x-gridbus-route"  # route name
ORIGINAL_EXCHANGE = "x-gridbus-original-exchange"
ORIGINAL_ROUTING_KEY = "x-gridbus-original-routing-key"
DEAD_LETTERED_AT = "x-gridbus-dead-lettered-at"
REPLAYED = "x-gridbus-replayed"  # how many times an operator replayed it
REPLAYED_BY = "x-gridbus-replayed-by"  # who replayed it last (--operator or the OS user, at most 64 characters)
REPLAYED_AT = "x-gridbus-replayed-at"  # ISO 8601, when it was replayed last
DUE_AT = "x-gridbus-due-at"  # epoch seconds; used by the in-memory broker's delay emulation
SOURCE_USER = "x-gridbus-source-user"  # user_id of the original publisher, kept when gridbus republishes a copy

# Set by RabbitMQ itself.
DELIVERY_COUNT = "x-delivery-count"
X_DEATH = "x-death"

# Set by gridbus on the copies it publishes (see workers.envelope).
UNTRUSTED_DROPPED = "x-gridbus-untrusted-dropped"  # publisher-set x-gridbus-* headers gridbus did not trust
HEADERS_DROPPED = "x-gridbus-headers-dropped"  # carried headers left out so the copy fits in one frame
