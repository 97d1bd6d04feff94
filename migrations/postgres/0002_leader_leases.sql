-- One row per role (e.g. `maintenance`): who leads until when.
CREATE TABLE leader_leases (
    role       text   PRIMARY KEY,
    holder     text   NOT NULL,
    expires_at bigint NOT NULL
);
