-- Incidents over time (GET /api/v1/stats/incidents, the Overview's chart of rescues,
-- worker crashes and restarts and evictions): their events by time. Partial, so only
-- these rare events enter it and no job's claim or finish does. The predicate is
-- `incident_kinds_sql!` in src/store/incidents.rs, repeated word for word by the query.
CREATE INDEX lifecycle_events_incidents ON lifecycle_events (at)
    WHERE kind IN ('job.rescued', 'worker.crashed', 'worker.restarted', 'node.evicted');
