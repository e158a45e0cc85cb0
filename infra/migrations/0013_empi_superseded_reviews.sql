-- A review whose question no longer stands is closed as `superseded` (docs/empi.md, "Review
-- decided"): its record's demographics changed, a review or a source merge of the record moved
-- it, or the record and the candidate became one person before a DIFFERENT_PERSONS answer.
ALTER TABLE empi.reviews DROP CONSTRAINT reviews_status_check;
ALTER TABLE empi.reviews ADD CONSTRAINT reviews_status_check
    CHECK (status IN ('open', 'same_person', 'different_persons', 'superseded'));
