-- The gateway's own state: who may call it, and what it has already published.

-- Bearer credentials: a token is shown once when issued and stored only as a SHA-256 digest
-- of its random 256-bit secret (a slow hash buys nothing against secrets that cannot be guessed).
CREATE TABLE gateway_credentials (
    credential_id uuid        PRIMARY KEY,
    secret_sha256 bytea       NOT NULL CHECK (length(secret_sha256) = 32),
    institution   text        NOT NULL,
    role          text        NOT NULL CHECK (role IN (
                      'publisher', 'referral_desk', 'clinician', 'bureau_analyst', 'administrator')),
    label         text        NOT NULL DEFAULT '',
    issued_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE INDEX gateway_credentials_institution ON gateway_credentials (institution);

-- Events the gateway published, recorded after Kafka acknowledged them: a retry with the same
-- event id and content gets the same answer without a second publish; other content is a conflict.
CREATE TABLE gateway_published_events (
    event_id       uuid        PRIMARY KEY,
    content_sha256 bytea       NOT NULL CHECK (length(content_sha256) = 32),
    source         text        NOT NULL,
    topic          text        NOT NULL,
    kafka_partition int        NOT NULL CHECK (kafka_partition >= 0),
    kafka_offset   bigint      NOT NULL CHECK (kafka_offset >= 0),
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
