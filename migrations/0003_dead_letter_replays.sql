-- Dead letters replayed into a read model (projections/dead_letters.py): one row per dead letter
-- id, written in the transaction that applies its record, so a replay asked twice applies once.
CREATE TABLE dead_letter_replays (
    id           text        PRIMARY KEY,
    projection   text        NOT NULL,
    replayed_at  timestamptz NOT NULL
);
