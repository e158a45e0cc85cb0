-- The consortium patient index (EMPI): its durable state, its review queue and its outbox.
-- Resident id numbers are never stored here in clear: records keep only keyed hashes
-- (HMAC-SHA256, key EMPI_ID_HASH_KEY) inside `demographics`.

CREATE SCHEMA IF NOT EXISTS empi;

-- One row per member's local patient record: the person it is linked to and what the source
-- last said about it. indexed_seq / assigned_seq restore the in-memory order (ties) on reload.
CREATE TABLE empi.records (
    institution  text   NOT NULL,
    local_id     text   NOT NULL,
    person_id    uuid   NOT NULL,
    demographics jsonb  NOT NULL,
    indexed_seq  bigint NOT NULL,
    assigned_seq bigint NOT NULL,
    PRIMARY KEY (institution, local_id)
);
CREATE INDEX records_by_person ON empi.records (person_id);

-- Person ids retired by a merge, and the person each now resolves to.
CREATE TABLE empi.merged_persons (
    retired_person_id uuid PRIMARY KEY,
    person_id         uuid NOT NULL
);

-- Local ids a source declared to be one patient (PatientIdentifiersMerged), both directions.
CREATE TABLE empi.source_partners (
    seq              bigserial PRIMARY KEY,
    institution      text NOT NULL,
    local_id         text NOT NULL,
    partner_local_id text NOT NULL,
    UNIQUE (institution, local_id, partner_local_id)
);

-- The review queue: a record that may belong to a person, waiting for an administrator.
CREATE TABLE empi.reviews (
    review_id             uuid PRIMARY KEY,
    institution           text NOT NULL,
    local_id              text NOT NULL,
    person_id             uuid NOT NULL,
    current_person_id     uuid NOT NULL,
    candidate_institution text NOT NULL,
    candidate_local_id    text NOT NULL,
    score                 double precision NOT NULL,
    agreement             jsonb NOT NULL,
    requested_at          timestamptz NOT NULL,
    status                text NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'same_person', 'different_persons')),
    decided_by            text,
    decided_at            timestamptz,
    note                  text
);
CREATE INDEX reviews_open ON empi.reviews (requested_at) WHERE status = 'open';

-- A record an administrator decided is not this person: never proposed again.
CREATE TABLE empi.apart (
    institution text NOT NULL,
    local_id    text NOT NULL,
    person_id   uuid NOT NULL,
    PRIMARY KEY (institution, local_id, person_id)
);

-- Events read before their predecessor (an update before its registration, a review decision
-- before its request), applied when that arrives. `event` is the event as JSON.
CREATE TABLE empi.parked (
    seq         bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    institution text,
    local_id    text,
    review_id   uuid,
    event       jsonb NOT NULL
);

-- Decisions to publish to the person topic, written in the transaction that made them
-- (transactional outbox); `payload` is the Confluent-framed Avro value.
CREATE TABLE empi.outbox (
    seq          bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    person_id    uuid NOT NULL,
    event_type   text NOT NULL,
    payload      bytea NOT NULL,
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON empi.outbox (seq) WHERE published_at IS NULL;

-- One row: bumped by every applied batch, so a worker knows whether its cached index is current.
CREATE TABLE empi.state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint  NOT NULL
);
INSERT INTO empi.state (version) VALUES (0);
