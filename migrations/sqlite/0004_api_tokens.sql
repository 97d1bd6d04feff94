-- HTTP API tokens: only the SHA-256 of each token's random part is kept, never the
-- token. Scopes and queues are comma-separated names (neither can hold a comma);
-- an empty queue list means every queue.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,
    queues       TEXT    NOT NULL DEFAULT '',
    hash         BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

-- Answers to requests sent with an `Idempotency-Key`, per token: reserved before the
-- work (status NULL), answered after it. A retry with the same key gets the stored
-- answer; a key reused for a different request (fingerprint) is refused.
CREATE TABLE api_idempotency (
    token       INTEGER NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    reserved_at INTEGER NOT NULL,
    status      INTEGER,
    body        TEXT,
    PRIMARY KEY (token, key)
);
CREATE INDEX api_idempotency_reserved ON api_idempotency (reserved_at);
