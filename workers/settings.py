"""All configuration, read once at start-up from ``GRIDBUS_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDBUS_", extra="ignore")

    broker_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672//",
        description="AMQP URL of RabbitMQ, or memory:// for the embedded in-process broker.",
    )
    store_url: str = Field(
        "sqlite:///var/gridbus.sqlite3",
        description="Idempotency and state store: sqlite:///PATH for one process, "
        "postgresql://... when several workers share the work.",
    )
    store_retention_days: float = Field(
        3.0, description="How long processed message ids are kept, in days (see the README's Sizing the store)."
    )
    prefetch: int = Field(200, description="Messages a worker takes from a queue before acking (per consumer).")
    batch_size: int = Field(100, description="Messages processed between two confirm waits / store commits.")
    batch_linger_ms: float = Field(
        5.0, ge=0, description="A batch is closed at the latest this many milliseconds after its first message, full or not."
    )
    confirm_timeout_s: float = Field(30.0, description="Longest wait for the broker's publisher confirms, in seconds.")
    message_deadline_s: float = Field(
        300.0, description="A batch still unfinished after this many seconds is taken as a hang: the worker exits."
    )
    log_format: str = Field("json", description="json (production) or console (people).")
    log_level: str = Field("INFO", description="Python logging level name.")

    cmd_soap_url: str = Field(
        "http://127.0.0.1:8081/cmd", description="Command center SOAP endpoint (the WSDL is served at ?wsdl)."
    )
    tc_soap_url: str = Field("http://127.0.0.1:8082/tc", description="Trading center SOAP endpoint.")
    soap_timeout_s: float = Field(10.0, description="Timeout of one SOAP operation, in seconds (always set).")
    soap_username: str | None = Field(None, description="WS-Security UsernameToken user; no token when unset.")
    soap_password: str | None = Field(None, description="WS-Security UsernameToken password.")
