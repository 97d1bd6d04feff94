-- Readers of the event log never skip an event committed late.
--
-- `lifecycle_events.seq` comes from a sequence, drawn when the row is inserted, not when
-- its transaction commits: a slow transaction can commit seq n after a reader has read
-- n + 1 and moved its cursor past n. The reader (`events_after`, the SSE stream,
-- `events --follow`, the Redis relay) now stops at a gap in the sequence while a
-- transaction that was in progress when it read could still fill it, and reads again
-- once all of those have ended (a gap that outlives them was rolled back or purged).
-- That needs one guarantee from the writers: a transaction holds its transaction id
-- before it draws a seq, so a gap's writer is always among the reader's snapshot's
-- in-progress transactions. An INSERT that is a transaction's first write evaluates the
-- column default before the row gets the transaction's id; this default takes the id
-- first.
CREATE SEQUENCE lifecycle_events_seq_next;
SELECT CASE WHEN v > 0 THEN setval('lifecycle_events_seq_next', v, true)
            ELSE setval('lifecycle_events_seq_next', 1, false) END
  FROM (SELECT greatest(
            (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
               FROM lifecycle_events_seq_seq),
            (SELECT coalesce(max(seq), 0) FROM lifecycle_events)) AS v) AS newest;

CREATE FUNCTION jm_event_seq() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_current_xact_id();
    RETURN nextval('lifecycle_events_seq_next');
END $$;

ALTER TABLE lifecycle_events ALTER COLUMN seq DROP IDENTITY;
ALTER TABLE lifecycle_events ALTER COLUMN seq SET DEFAULT jm_event_seq();
ALTER SEQUENCE lifecycle_events_seq_next OWNED BY lifecycle_events.seq;
