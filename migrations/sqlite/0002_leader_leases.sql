-- One row per role (e.g. `maintenance`): who leads until when.
CREATE TABLE leader_leases (
    role       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
