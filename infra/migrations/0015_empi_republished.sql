-- Decisions a switch publishes so that the person topic's readers follow a change of the index's
-- logic (docs/empi.md, "A change of logic, published"): fresh ids, relayed like the others, but
-- not the index's own decisions, so a digest leaves them out (a rebuild does not make them).
ALTER TABLE empi.outbox ADD COLUMN republished boolean NOT NULL DEFAULT false;
