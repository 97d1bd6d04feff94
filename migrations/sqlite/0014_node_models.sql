-- Saved models (see store::models): each node's live predictors as one versioned blob,
-- replaced at every save (every minute and at shutdown), read when a node starts and
-- when predictions are shown. Rows of nodes that stopped saving are purged by the
-- `models` retention namespace, by saved_at.
CREATE TABLE node_models (
    node     TEXT    PRIMARY KEY,
    saved_at INTEGER NOT NULL,
    body     BLOB    NOT NULL
);
CREATE INDEX node_models_saved_at ON node_models (saved_at);
