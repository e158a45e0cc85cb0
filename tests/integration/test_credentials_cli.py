"""`consortium credentials issue|list|revoke` against a real PostgreSQL: the token is shown once
and stored only as a digest; `list` shows no secret; revocation refuses the next request."""

from __future__ import annotations

import hashlib
import uuid

import psycopg
from typer.testing import CliRunner

from consortium.cli import app
from examples import TOWNSHIP
from gateway.credentials import _TOKEN


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["credentials", *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_token_is_printed_once_stored_as_its_digest_and_never_listed(
    scratch_database_url: str,
) -> None:
    from infra.migrate import apply_migrations

    url = scratch_database_url
    apply_migrations(url)
    code, out, err = _run(
        "issue",
        "--institution",
        TOWNSHIP,
        "--role",
        "clinician",
        "--label",
        "EMR",
        "--database",
        url,
    )
    assert code == 0, err
    token = out.strip()
    match = _TOKEN.fullmatch(token)
    assert match is not None  # cbt_<credential id>_<43 characters: 256 random bits>
    credential_id, secret = uuid.UUID(hex=match.group(1)), match.group(2)
    assert str(credential_id) in err and secret not in err
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT secret_sha256, institution, role, label FROM gateway_credentials"
            " WHERE credential_id = %s",
            (credential_id,),
        ).fetchone()
        every = conn.execute("SELECT gateway_credentials::text FROM gateway_credentials").fetchall()
    assert row is not None
    assert bytes(row[0]) == hashlib.sha256(secret.encode()).digest()
    assert row[1:] == (TOWNSHIP, "clinician", "EMR")
    assert not any(secret in text or token in text for (text,) in every)
    # Another issue gives another secret.
    _, second, _ = _run("issue", "--institution", TOWNSHIP, "--database", url)
    assert second.strip() != token and _TOKEN.fullmatch(second.strip()) is not None
    code, listed, _ = _run("list", "--database", url)
    assert code == 0 and str(credential_id) in listed and "active" in listed
    digest = bytes(row[0]).hex()
    for shown in (token, secret, digest, second.strip().split("_")[2]):
        assert shown not in listed
    code, _, _ = _run("revoke", str(credential_id), "--database", url)
    assert code == 0
    code, listed, _ = _run("list", "--institution", TOWNSHIP, "--database", url)
    assert f"{credential_id}" in listed and "revoked" in listed
    code, _, err = _run("revoke", str(credential_id), "--database", url)
    assert code == 1 and "no active credential" in err


def test_a_credential_for_a_non_member_is_refused_and_nothing_is_stored(
    scratch_database_url: str,
) -> None:
    from infra.migrate import apply_migrations

    apply_migrations(scratch_database_url)
    code, out, _ = _run("issue", "--institution", "439901-V999", "--database", scratch_database_url)
    assert code != 0 and "cbt_" not in out
    with psycopg.connect(scratch_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM gateway_credentials").fetchone() == (0,)
