-- The institution that first requested each referral id through the gateway (docs/referrals.md,
-- "Who names a referral"): a later ReferralRequested of the id from another institution is 409,
-- so no member can take over another's referral by requesting its id with an earlier date.
CREATE TABLE gateway_referral_requesters (
    referral_id  uuid        PRIMARY KEY,
    institution  text        NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
