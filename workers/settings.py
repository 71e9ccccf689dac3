"""All configuration, read once at start-up from ``GRIDBUS_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridbus.routes.model import SYSTEMS


#: The logging level names accepted by GRIDBUS_LOG_LEVEL (case does not matter).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """Settings that cannot be used, as one line naming each variable and what it accepts."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDBUS_", extra="ignore")

    broker_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672//",
        description="AMQP URL of RabbitMQ, or several separated by ';' (the nodes of a cluster, tried in turn), "
        "or memory:// for the embedded in-process broker.",
    )
    heartbeat_s: float = Field(
        30.0, description="AMQP heartbeat proposed to the broker, in seconds; a silent broker is dropped after two. 0: off."
    )
    amqp_fast_path: bool = Field(
        True,
        description="Read deliveries and write publishes below py-amqp's public API (buffered socket reads, "
        "publish frames encoded once per template): about twice the throughput. false: py-amqp's public API "
        "alone. Off by itself on a py-amqp minor version other than the one it is tested on.",
    )
    worker_name: str = Field("worker", description="Names the worker's connections: 'gridbus NAME@host pid N role'.")
    store_url: str = Field(
        "sqlite:///var/gridbus.sqlite3",
        description="Idempotency and state store: sqlite:///PATH for one process, "
        "postgresql://... when several workers share the work.",
    )
    store_retention_days: float = Field(
        3.0, description="How long processed message ids are kept, in days (see the README's Sizing the store)."
    )
    prefetch: int = Field(200, ge=1, description="Messages a worker takes from a queue before acking (per consumer).")
    batch_size: int = Field(100, ge=1, description="Messages processed between two confirm waits / store commits.")
    batch_linger_ms: float = Field(
        5.0, ge=0, description="A batch is closed at the latest this many milliseconds after its first message, full or not."
    )
    confirm_timeout_s: float = Field(30.0, gt=0, description="Longest wait for the broker's publisher confirms, in seconds.")
    message_deadline_s: float = Field(
        300.0,
        description="A batch that makes no progress for this many seconds (no synchronous call ends) is taken as a "
        "hang: the worker exits. Per lane; must be longer than soap_timeout_s for a lane that calls a SOAP peer.",
    )
    lanes: bool = Field(
        True,
        description="Consume in lanes: one per set of synchronous peers the routes' steps call, each its own "
        "consumer in a thread of its own, so a slow or failing peer holds only its own routes' messages.",
    )
    breaker_failures: int = Field(
        5, ge=1, description="Transient failures in a row that open a synchronous peer's circuit breaker."
    )
    breaker_cooldown_s: float = Field(
        30.0, gt=0, description="How long an open breaker sends its peer's messages to their broker-held retry "
        "without a call, in seconds, before one probe call is let through.",
    )
    source_users: dict[str, str] = Field(
        default_factory=dict,
        description='RabbitMQ user that publishes for each source system, as JSON {"pms": "prod-pms"}; '
        "a system not named publishes as the user named by its code.",
    )
    log_format: Literal["json", "console"] = Field("json", description="json (production) or console (people).")
    log_level: str = Field("INFO", description="Python logging level name: DEBUG, INFO, WARNING, ERROR or CRITICAL.")

    cmd_soap_url: str = Field(
        "http://127.0.0.1:8081/cmd", description="Command center SOAP endpoint (the WSDL is served at ?wsdl)."
    )
    tc_soap_url: str = Field("http://127.0.0.1:8082/tc", description="Trading center SOAP endpoint.")
    soap_timeout_s: float = Field(10.0, gt=0, description="Timeout of one SOAP operation, in seconds (always set).")
    soap_username: str | None = Field(None, description="WS-Security UsernameToken user; no token when unset.")
    soap_password: str | None = Field(None, description="WS-Security UsernameToken password.")

    @field_validator("log_level")
    @classmethod
    def _a_logging_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"one of {', '.join(LOG_LEVELS)} is accepted")
        return level

    @field_validator("source_users")
    @classmethod
    def _one_user_per_system(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(SYSTEMS))
        if unknown:
            raise ValueError(f"unknown source system(s) {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
        for system, user in value.items():
            if not user or len(user) > 255 or any(c.isspace() or not c.isprintable() for c in user):
                raise ValueError(f"user of {system!r} must be 1-255 printable characters without spaces")
        users = {s: value.get(s, s) for s in SYSTEMS}
        shared = sorted({u for u in users.values() if list(users.values()).count(u) > 1})
        if shared:
            raise ValueError(f"user(s) {', '.join(shared)} would publish for more than one system: give each its own")
        return value

    def source_user_names(self) -> dict[str, str]:
        """system code -> the RabbitMQ user that publishes for it (``source_users``, else the code)."""
        return {system: self.source_users.get(system, system) for system in SYSTEMS}


def load_settings(**overrides) -> Settings:
    """The settings, from ``GRIDBUS_*`` and ``overrides``; ``SettingsError`` in one line otherwise."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """``GRIDBUS_BATCH_SIZE=-5: Input should be greater than or equal to 1; ...``: one line."""
    problems = []
    for error in exc.errors():
        name = "GRIDBUS_" + "_".join(str(part) for part in error["loc"][:1]).upper()
        value = error.get("input")
        shown = value if isinstance(value, str) else repr(value)
        shown = "".join(c if c.isprintable() else "?" for c in shown)
        shown = shown if len(shown) <= 80 else shown[:80] + "..."
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{name}={shown}: {message}")
    return "invalid settings: " + "; ".join(problems)
