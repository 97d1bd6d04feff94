-- The dead-letter queue grouped by reason (GET /api/v1/dlq/groups, src/store/insights.rs):
-- a reason's shape is the reason with every run of digits written `#` (runs of up to 64
-- digits; a longer one leaves a few `#`), cut at 200 characters, so `timeout after 1200
-- ms` and `timeout after 87 ms` are one group. Computed by the store (a generated
-- column: the same expression here and in the other backend's migration), so every
-- statement that dead-letters a job keeps writing only the columns it wrote, and the
-- groups are an index scan, not a regex per row per read.
ALTER TABLE dead_letter_queue ADD COLUMN reason_shape text GENERATED ALWAYS AS (
    substr(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(reason, '0', '#'), '1', '#'), '2', '#'), '3', '#'), '4', '#'), '5', '#'), '6', '#'), '7', '#'), '8', '#'), '9', '#'), '##', '#'), '##', '#'), '##', '#'), '##', '#'), '##', '#'), '##', '#'), 1, 200)
) STORED;
-- Groups by (queue, shape) by an index-only scan, and the redrive of one group.
CREATE INDEX dead_letter_groups ON dead_letter_queue (queue, reason_shape, discarded_at, job);
