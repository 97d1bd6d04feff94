-- One row: a random identity of this store (database + schema), drawn once. The hybrid
-- store writes it into Redis beside its keys, so a Redis prefix still holding the
-- dispatch state of another store (a dropped and recreated database, a copy, a second
-- cluster pointed at the same prefix) is refused instead of mixing job ids.
CREATE TABLE store_identity (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    id       text    NOT NULL
);
