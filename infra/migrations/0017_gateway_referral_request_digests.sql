-- What each referral id's first request asked (docs/referrals.md, "Who names a referral"): the
-- board applies a referral's earliest request only, so a later request of the id with other
-- content (another receiver, urgency, reason …) would be published and ignored; the gateway
-- answers it 409 instead. Null for ids claimed before this column: their holder's requests pass.
ALTER TABLE gateway_referral_requesters ADD COLUMN request_sha256 bytea
    CHECK (length(request_sha256) = 32);
