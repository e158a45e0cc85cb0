"""The Kafka client settings of this process, chosen by the environment (docs/security.md).

Plaintext (nothing set) gives `{}`, so a client's settings are only its bootstrap servers.
`KAFKA_PRINCIPAL` names one principal of the secure folder `infra up --secure` made;
`KAFKA_SECURITY_DIR` alone lets each component connect as its own principal (the gateway as
`<c>.gateway`, a processor as `<c>.processor.<projection>`); the `KAFKA_SSL_*`/`KAFKA_SASL_*`
variables set (or override) single settings, for a cluster the project did not start.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

PRINCIPAL = "KAFKA_PRINCIPAL"
SECURITY_DIR = "KAFKA_SECURITY_DIR"
# One environment variable per librdkafka setting a secured client needs.
SETTINGS: Mapping[str, str] = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
}


class KafkaSecurityError(ValueError):
    """The environment asks for secure Kafka but does not say who this client is."""


def kafka_client_config(
    principal: str | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """confluent-kafka settings of a client whose own principal is `principal`; {} if plaintext."""
    env = os.environ if environ is None else environ
    folder = env.get(SECURITY_DIR) or None
    config: dict[str, str] = {}
    # An operator's explicit principal wins over the component's own.
    who = env.get(PRINCIPAL) or (principal if folder else None)
    if who:
        from infra.security import client_config

        config.update(client_config(who, Path(folder) if folder else None))
    config.update({key: env[name] for name, key in SETTINGS.items() if env.get(name)})
    if folder and "sasl.username" not in config:
        raise KafkaSecurityError(
            f"{SECURITY_DIR} is set but this client has no principal of its own: set {PRINCIPAL}"
        )
    return config


def is_secure(config: Mapping[str, str]) -> bool:
    """Whether the settings speak TLS."""
    return config.get("security.protocol", "PLAINTEXT").upper() in ("SSL", "SASL_SSL")


def ssl_context(config: Mapping[str, str]) -> ssl.SSLContext | None:
    """The Python TLS context (aiokafka, faust) of confluent-style settings; None if plaintext."""
    if not is_secure(config):
        return None
    context = ssl.create_default_context(cafile=config.get("ssl.ca.location"))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if "ssl.certificate.location" in config:
        context.load_cert_chain(config["ssl.certificate.location"], config.get("ssl.key.location"))
    if config.get("ssl.endpoint.identification.algorithm", "https") == "none":
        context.check_hostname = False
    return context


def aiokafka_settings(config: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments of an aiokafka client that connect like these settings."""
    protocol = config.get("security.protocol", "PLAINTEXT").upper()
    settings: dict[str, Any] = {"security_protocol": protocol}
    if is_secure(config):
        settings["ssl_context"] = ssl_context(config)
    if protocol.startswith("SASL_"):
        settings.update(
            sasl_mechanism=config.get("sasl.mechanism", "PLAIN"),
            sasl_plain_username=config.get("sasl.username"),
            sasl_plain_password=config.get("sasl.password"),
        )
    return settings


def faust_credentials(config: Mapping[str, str]) -> CredentialsT | None:
    """faust's `broker_credentials` for these settings; None in plaintext mode."""
    import faust

    protocol = config.get("security.protocol", "PLAINTEXT").upper()
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=config.get("sasl.username"),
            password=config.get("sasl.password"),
            ssl_context=ssl_context(config),
            mechanism=config.get("sasl.mechanism", "PLAIN"),
        )
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(config))
    return None


def with_environment(
    config: Mapping[str, Any] | None = None, principal: str | None = None
) -> dict[str, Any]:
    """A client's own settings over the environment's security; a caller's protocol wins whole."""
    own = dict(config or {})
    if "security.protocol" in own:
        return own
    return {**kafka_client_config(principal), **own}
