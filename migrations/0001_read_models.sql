-- The read models the gateway answers clients from. Only projections/ writes them.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text        NOT NULL UNIQUE,   -- folded to lower case
    display_name  text        NOT NULL,
    bio           text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL
);
CREATE INDEX users_username_prefix ON users (username text_pattern_ops);

-- The argon2id hash the gateway computed at registration; read by login only.
CREATE TABLE user_credentials (
    user_id        uuid PRIMARY KEY REFERENCES users (id),
    password_hash  text NOT NULL
);

CREATE TABLE chats (
    id                uuid PRIMARY KEY,
    type              text        NOT NULL CHECK (type IN ('direct', 'group')),
    title             text,
    created_by        uuid        NOT NULL,
    created_at        timestamptz NOT NULL
);

-- Written by the messages projection (chat rows by the chats projection: the two topics are
-- read independently, so neither may wait for the other).
CREATE TABLE chat_activity (
    chat_id           uuid PRIMARY KEY,
    last_seq          bigint      NOT NULL,
    last_message_id   uuid        NOT NULL,
    last_activity_at  timestamptz NOT NULL
);

CREATE TABLE chat_members (
    chat_id    uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at  timestamptz NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_members_by_user ON chat_members (user_id);

CREATE TABLE messages (
    id             uuid PRIMARY KEY,
    chat_id        uuid        NOT NULL,
    seq            bigint      NOT NULL,
    sender_id      uuid        NOT NULL,
    text           text        NOT NULL,         -- '' once deleted
    client_msg_id  text        NOT NULL,
    created_at     timestamptz NOT NULL,
    edited_at      timestamptz,
    deleted        boolean     NOT NULL DEFAULT false,
    UNIQUE (chat_id, seq)
);

-- Where each member has read up to, and how many messages of others lie after it
-- (the sender's own message moves the sender's marker to it).
CREATE TABLE read_markers (
    chat_id       uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    seq           bigint      NOT NULL DEFAULT 0,
    unread_count  bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);

-- What each projection has applied, per topic partition, written in the same transaction as its
-- rows: an event at an offset below next_offset was applied already and is skipped.
CREATE TABLE projection_offsets (
    projection   text   NOT NULL,
    topic        text   NOT NULL,
    partition    int    NOT NULL,
    next_offset  bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);
