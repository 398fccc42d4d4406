-- The credentials projection's read model (projections/credentials.py): each user's password hash
-- from the compacted topic `user.credentials`, newest wins, deleted by a tombstone (an account's
-- erasure). No foreign key to users: the two topics are read apart, in any order. Read by login
-- before user_credentials, which keeps the hashes of the registrations of before (docs/erasure.md).
CREATE TABLE password_credentials (
    user_id        uuid        PRIMARY KEY,
    password_hash  text        NOT NULL,
    changed_at     timestamptz NOT NULL
);
