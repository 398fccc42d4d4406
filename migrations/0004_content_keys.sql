-- The projections worker's mirror of the compacted topic `content.keys` (projections/key_mirror.py,
-- docs/erasure.md): the data key of each content version, or null once a tombstone shredded it.
-- Not a read model: it is never rebuilt from the events, only followed from its topic; a row with
-- a null key tells an erased text (shredded on purpose) from a lost key (no row at all).
-- Vacuumed eagerly: a shredded key's old row version must not wait for 20% of the table to change.
CREATE TABLE content_keys (
    key_id      text        PRIMARY KEY,
    key         bytea       CHECK (key IS NULL OR octet_length(key) = 32),
    owner_id    uuid,
    shredded_at timestamptz,
    CHECK ((key IS NULL) = (shredded_at IS NOT NULL))
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 50);
