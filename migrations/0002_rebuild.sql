-- Blue/green rebuilds of the read models (projections/rebuild.py).

-- The version of each projection's live read model: a projections worker whose code declares
-- another version builds its own in a shadow schema and swaps it in before it writes.
CREATE TABLE projection_versions (
    projection  text        PRIMARY KEY,
    version     int         NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO projection_versions (projection, version) VALUES ('users', 1), ('chats', 1), ('messages', 1);

-- The last rebuild of each projection, as it goes (schemas.progress.RebuildProgress): written
-- about once a second by the rebuild, read by the operator console.
CREATE TABLE rebuild_progress (
    projection    text             PRIMARY KEY,
    phase         text             NOT NULL
                  CHECK (phase IN ('bulk', 'indexes', 'catch_up', 'checksum', 'swap', 'done', 'failed')),
    done          bigint           NOT NULL DEFAULT 0,
    total         bigint           NOT NULL DEFAULT 0,
    events_per_s  double precision NOT NULL DEFAULT 0,
    eta_s         double precision,
    started_at    timestamptz      NOT NULL,
    updated_at    timestamptz      NOT NULL,
    error         text             NOT NULL DEFAULT ''
);
