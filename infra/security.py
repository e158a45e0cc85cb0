"""Secure Kafka (`infra up --secure`): a local CA, TLS certificates, SCRAM principals and ACLs."""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consortium.settings import get_settings
from events.topics import (
    DEAD_LETTER_TOPICS,
    MEMBER_FAMILIES,
    READ_AUDIT_TOPIC,
    Family,
    event_topic,
)
from infra.process import LOOPBACK

SCRAM = "SCRAM-SHA-512"
BROKER = "broker"
ADMIN = "admin"
EMPI = "empi"  # the patient index's runner (processors/empi.py), a processor of its own kind
ORGANISATION = "consortium-backbone"
VALIDITY = datetime.timedelta(days=825)
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_quiet = logging.getLogger("infra.security.admin")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def gateway_principal(consortium_id: str) -> str:
    """The principal the gateway writes events as."""
    return f"{consortium_id}.gateway"


def bureau_principal(consortium_id: str) -> str:
    """The principal county health bureaus read their de-identified streams as."""
    return f"{consortium_id}.bureau"


def processor_principal(consortium_id: str, projection: str) -> str:
    """The principal one projection's processor reads (and dead-letters) as."""
    return f"{consortium_id}.processor.{projection}"


def hospital_principal(consortium_id: str, institution: str) -> str:
    """A member's own Kafka principal; it holds no grant (hospitals write through the gateway)."""
    return f"{consortium_id}.hospital.{institution}"


def consortium_principals(consortium_id: str) -> list[str]:
    """The service principals of one consortium: gateway, bureau, one per projection, the index."""
    from processors.wiring import PROJECTIONS

    return [
        gateway_principal(consortium_id),
        bureau_principal(consortium_id),
        *(processor_principal(consortium_id, name) for name in PROJECTIONS),
        processor_principal(consortium_id, EMPI),
    ]


class KafkaSecurity:
    """The secure mode's material in one folder: CA, broker keystores, principals' keys."""

    def __init__(self, folder: Path, principals: Iterable[str] = ()) -> None:
        self.folder = folder.resolve()
        self.principals = list(dict.fromkeys((BROKER, ADMIN, *principals)))

    @property
    def ca_file(self) -> Path:
        """The CA certificate every client and broker trusts."""
        return self.folder / "ca.pem"

    def broker_keystore(self, node_id: int) -> Path:
        """One broker's PEM keystore: private key, certificate, CA certificate."""
        return self.folder / "brokers" / f"broker-{node_id}.pem"

    def prepare(self, node_ids: Iterable[int]) -> None:
        """Create whatever is missing: CA, a certificate per broker and per principal, passwords."""
        (self.folder / "brokers").mkdir(parents=True, exist_ok=True)
        (self.folder / "principals").mkdir(exist_ok=True)
        self.folder.chmod(0o700)
        ca = _load_or_create_ca(self.folder)
        for node_id in node_ids:
            keystore = self.broker_keystore(node_id)
            if not keystore.is_file():
                key, cert = _issue(ca, f"broker-{node_id}", broker=True)
                _write_private(keystore, _key_pem(key) + _cert_pem(cert) + _cert_pem(ca[1]))
        passwords = self._passwords()
        for name in self.principals:
            passwords.setdefault(name, secrets.token_urlsafe(24))
            cert_file, key_file = self._principal_files(name)
            if not cert_file.is_file():
                key, cert = _issue(ca, name, broker=False)
                _write_private(key_file, _key_pem(key))
                cert_file.write_bytes(_cert_pem(cert))
        _write_private(self.folder / "principals.json", json.dumps(passwords, indent=2).encode())

    def format_args(self) -> list[str]:
        """Arguments of the storage tool's format that store every principal's SCRAM credential."""
        passwords = self._passwords()
        return [
            f"--add-scram={SCRAM}=[name={name},password={passwords[name]}]"
            for name in self.principals
        ]

    def server_config(self, node_id: int, broker_port: int, controller_port: int) -> dict[str, str]:
        """Overrides of server.properties: SASL_SSL for clients, mutual TLS for the controller."""
        password = self.password(BROKER)
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER}" password="{password}";'
        )
        return {
            # No PLAINTEXT listener: clients reach only SASL_SSL; brokers also talk over it.
            "listeners": f"SASL_SSL://{LOOPBACK}:{broker_port},CONTROLLER://{LOOPBACK}:{controller_port}",
            "advertised.listeners": f"SASL_SSL://{LOOPBACK}:{broker_port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": SCRAM,
            "sasl.mechanism.inter.broker.protocol": SCRAM,
            f"listener.name.sasl_ssl.{SCRAM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.broker_keystore(node_id)),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            # A password alone is not enough: every client also shows a certificate of our CA.
            "ssl.client.auth": "required",  # the controller's SSL listener
            "listener.name.sasl_ssl.ssl.client.auth": "required",  # the global one skips SASL_SSL
            "ssl.enabled.protocols": "TLSv1.3",
            "ssl.protocol": "TLSv1.3",
            # SCRAM cannot guard the controller listener (its credentials live in the metadata
            # the controller serves), so controllers admit only broker certificates: CN=broker-N.
            "ssl.principal.mapping.rules": (
                f"RULE:^CN=broker-[0-9]+,O={ORGANISATION}$/{BROKER}/,DEFAULT"
            ),
            "authorizer.class.name": AUTHORIZER,
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{BROKER};User:{ADMIN}",
        }

    def password(self, principal: str) -> str:
        """The SCRAM password of a principal."""
        try:
            return self._passwords()[principal]
        except KeyError:
            raise KeyError(f"no Kafka principal {principal!r} in {self.folder}") from None

    def client_config(self, principal: str) -> dict[str, str]:
        """confluent-kafka settings that connect as this principal over SASL_SSL."""
        cert_file, key_file = self._principal_files(principal)
        return {
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(self.ca_file),
            "ssl.certificate.location": str(cert_file),
            "ssl.key.location": str(key_file),
            "ssl.endpoint.identification.algorithm": "https",
            "sasl.mechanism": SCRAM,
            "sasl.username": principal,
            "sasl.password": self.password(principal),
        }

    def _principal_files(self, principal: str) -> tuple[Path, Path]:
        """A principal's certificate and private key."""
        folder = self.folder / "principals"
        return folder / f"{principal}.crt", folder / f"{principal}.key"

    def _passwords(self) -> dict[str, str]:
        """Every principal's password, as kept in principals.json (readable by the owner only)."""
        try:
            passwords: dict[str, str] = json.loads((self.folder / "principals.json").read_text())
        except FileNotFoundError:
            return {}
        return passwords


def client_config(principal: str, security_dir: Path | None = None) -> dict[str, str]:
    """confluent-kafka settings for a principal of the secure cluster `infra up --secure` runs."""
    folder = security_dir or get_settings().state_dir / "kafka" / "security"
    return KafkaSecurity(folder).client_config(principal)


@dataclass(frozen=True)
class Grant:
    """One permission: a principal may do an operation on a topic or group, by name or prefix."""

    principal: str
    operation: AclOperation
    resource: ResourceType
    name: str
    prefixed: bool = False

    def binding(self) -> AclBinding:
        """The ACL that allows it."""
        pattern = ResourcePatternType.PREFIXED if self.prefixed else ResourcePatternType.LITERAL
        return AclBinding(
            self.resource, self.name, pattern, f"User:{self.principal}", "*",
            self.operation, AclPermissionType.ALLOW,
        )  # fmt: skip


TOPIC, GROUP = ResourceType.TOPIC, ResourceType.GROUP
READ, WRITE, ALL = AclOperation.READ, AclOperation.WRITE, AclOperation.ALL


def grants(consortium_id: str) -> list[Grant]:
    """Every permission of one consortium; what is not granted here is denied."""
    from processors.app import group_id
    from processors.wiring import PROJECTIONS

    c = consortium_id
    # The gateway checks envelope.source against the caller's credential, so it alone writes
    # events; the patient index's identity decisions (person) are not the gateway's to write.
    allowed: list[Grant] = [
        Grant(gateway_principal(c), WRITE, TOPIC, event_topic(f, c))
        for f in sorted(MEMBER_FAMILIES)
    ]
    for name, projection in PROJECTIONS.items():
        who, group = processor_principal(c, name), group_id(c, name)
        for family in projection.families:
            allowed.append(Grant(who, READ, TOPIC, event_topic(family, c)))
            allowed.append(Grant(who, WRITE, TOPIC, DEAD_LETTER_TOPICS[family].name(c)))
        allowed.append(Grant(who, READ, GROUP, group))
        # faust's own topics are named after its app id (the group).
        allowed.append(Grant(who, ALL, TOPIC, f"{group}-", prefixed=True))
        # A rebuild replays as the processor, under a group name of its own (a label only).
        allowed.append(Grant(who, READ, GROUP, f"{c}.rebuild.{name}.", prefixed=True))
    # The reporting relay runs in the reporting processor and writes the bureau streams.
    allowed.append(
        Grant(processor_principal(c, "reporting"), WRITE, TOPIC, f"{c}.reporting.", True)
    )
    # The transfers relay runs in the transfers processor and writes the derived transfers.
    allowed.append(
        Grant(
            processor_principal(c, "transfers"),
            WRITE,
            TOPIC,
            event_topic(Family.DERIVED_TRANSFERS, c),
        )
    )
    # The record's relay runs in the record processor and writes the derived repeat checks.
    allowed.append(
        Grant(
            processor_principal(c, "record"), WRITE, TOPIC, event_topic(Family.DERIVED_REPEATS, c)
        )
    )
    allowed += _index_grants(c)
    gateway = gateway_principal(c)
    # The gateway also writes its read audit and serves the bureau streams it reads.
    allowed.append(Grant(gateway, WRITE, TOPIC, READ_AUDIT_TOPIC.name(c)))
    allowed.append(Grant(gateway, READ, TOPIC, f"{c}.reporting.", prefixed=True))
    allowed.append(Grant(gateway, READ, GROUP, f"{c}.reports-stream.", prefixed=True))
    bureau = bureau_principal(c)
    allowed.append(Grant(bureau, READ, TOPIC, f"{c}.reporting.", prefixed=True))
    allowed.append(Grant(bureau, READ, GROUP, f"{c}.bureau.", prefixed=True))
    return allowed


def _index_grants(c: str) -> list[Grant]:
    """The patient index reads registrations and review answers, and writes identity decisions."""
    who = processor_principal(c, EMPI)
    allowed = [Grant(who, READ, GROUP, f"{c}.{EMPI}")]
    for family in (Family.PATIENT, Family.PERSON):
        allowed.append(Grant(who, READ, TOPIC, event_topic(family, c)))
        allowed.append(Grant(who, WRITE, TOPIC, DEAD_LETTER_TOPICS[family].name(c)))
    allowed.append(Grant(who, WRITE, TOPIC, event_topic(Family.PERSON, c)))
    return allowed


def apply_grants(
    bootstrap: str, admin: Mapping[str, str], allowed: Iterable[Grant], timeout: float = 30.0
) -> int:
    """Create the ACLs of the grants (creating an existing ACL changes nothing); how many."""
    client = AdminClient({"bootstrap.servers": bootstrap, **admin}, logger=_quiet)
    bindings = [g.binding() for g in allowed]
    for future in client.create_acls(bindings, request_timeout=timeout).values():
        future.result()
    return len(bindings)


def register_principals(
    bootstrap: str, security: KafkaSecurity, node_ids: Iterable[int], timeout: float = 30.0
) -> list[str]:
    """Give principals added after format their certificate and SCRAM credential; their names."""
    security.prepare(node_ids)
    config: dict[str, str | int | float | bool] = {"bootstrap.servers": bootstrap}
    config.update(security.client_config(ADMIN))
    client = AdminClient(config, logger=_quiet)
    described = client.describe_user_scram_credentials(request_timeout=timeout)
    assert isinstance(described, Future)  # asked for every user: one future of a dict
    known = described.result()
    missing = [name for name in security.principals if name not in known]
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(name, info, security.password(name).encode())
        for name in missing
    ]
    if upserts:
        for future in client.alter_user_scram_credentials(upserts).values():
            future.result()
    return missing


def _load_or_create_ca(folder: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The consortium's local CA, created on first use."""
    key_file, cert_file = folder / "ca.key", folder / "ca.pem"
    if key_file.is_file() and cert_file.is_file():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key, x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"{ORGANISATION} local CA")
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_file, _key_pem(key))
    cert_file.write_bytes(_cert_pem(cert))
    return key, cert


def _issue(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], common_name: str, *, broker: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A key and a certificate signed by the CA: brokers serve and connect, principals connect."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    purposes = [ExtendedKeyUsageOID.CLIENT_AUTH]
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if broker:
        purposes.append(ExtendedKeyUsageOID.SERVER_AUTH)
        # Clients verify the broker's name: it is reached only as 127.0.0.1 (or localhost).
        names = [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    builder = builder.add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _name(common_name: str) -> x509.Name:
    """CN=<name>,O=consortium-backbone (Kafka renders it in this order)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    """Key usage of a CA (signs certificates) or of a TLS end entity (signs handshakes)."""
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """An unencrypted PKCS#8 key (Kafka's PEM keystore and librdkafka read it); files are 0600."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    """A certificate in PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_private(path: Path, content: bytes) -> None:
    """Write a secret readable by its owner only, never briefly readable by others."""
    partial = path.with_suffix(path.suffix + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    partial.replace(path)
