"""Settings read from the environment, one class for every process of the backbone."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where the servers are and which consortium this deployment serves."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    consortium_id: str = Field(
        default="demo",
        pattern=r"^[a-z][a-z0-9-]{1,30}$",
        description="Tenant prefix of every topic name (lower case).",
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="Existing Kafka cluster; unset means the project's own broker."
    )
    database_url: SecretStr | None = Field(
        default=None, description="Existing PostgreSQL; unset means the project's own cluster."
    )
    state_dir: Path = Field(
        default=PROJECT_ROOT / ".state",
        description="Data and logs of the servers the project runs.",
    )
    cache_dir: Path = Field(
        default=PROJECT_ROOT / ".cache", description="Downloaded Kafka jars (kept between runs)."
    )
    membership_file: Path | None = Field(
        default=None, description="CSV of member institutions; unset means the bundled county."
    )
    recognition_table: Path | None = Field(
        default=None,
        description="CSV of tests whose results members recognise, and for how long;"
        " unset means the bundled table (projections/record/data/recognition.csv).",
    )
    topic_replication_factor: int | None = Field(
        default=None, ge=1, description="Override of declared replication (clamped to brokers)."
    )
    clock_skew_seconds: int = Field(
        default=300, ge=0, description="How far in the future an occurred_at may lie."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the settings once per process."""
    return Settings()
