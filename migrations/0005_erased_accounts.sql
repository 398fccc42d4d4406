-- Erased accounts (the users projection, version 2; docs/erasure.md): ids and times only, so that
-- the gateways can finish an erasure a stopped gateway left midway.
CREATE TABLE erased_accounts (
    user_id    uuid        PRIMARY KEY,
    erased_at  timestamptz NOT NULL
);
CREATE INDEX erased_accounts_by_time ON erased_accounts (erased_at);

-- A row taken over by a later registration of its username (after an erasure) keeps the old
-- user's legacy hash under the old id until that user's erasure deletes it: no foreign key.
ALTER TABLE user_credentials DROP CONSTRAINT user_credentials_user_id_fkey;

-- A users read model of version 1 plus this empty table is version 2: no `user.erased` was ever
-- written before the code that writes version 2, so no rebuild is needed. A model swapped in at
-- another version (a rebuild in flight) is left to its own rules (projections/versions.py).
UPDATE projection_versions SET version = 2, updated_at = now() WHERE projection = 'users' AND version = 1;
