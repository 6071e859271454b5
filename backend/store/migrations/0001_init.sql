-- mailcluster metadata schema, version 1.
-- Every table is keyed by account first (DESIGN rule 5), so that the schema
-- can be distributed by account (Citus) without a redesign. The blob tables
-- are cross-account by nature (one body may serve many accounts) and are
-- used only by delivery and the sweeper.

CREATE TABLE accounts (
    account_id    text PRIMARY KEY,
    -- The account's highest MODSEQ. Every change to any mailbox of the
    -- account takes the next value, in the transaction that makes it, so
    -- MODSEQs are strictly increasing per mailbox (RFC 7162) and a watcher
    -- needs one number per account.
    modseq        bigint NOT NULL DEFAULT 1,
    storage_bytes bigint NOT NULL DEFAULT 0,
    message_count bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Mailbox ids are never reused; a mailbox's UIDVALIDITY is its id.
CREATE SEQUENCE mailbox_ids;

CREATE TABLE mailboxes (
    account_id     text NOT NULL REFERENCES accounts ON DELETE CASCADE,
    mailbox_id     bigint NOT NULL,
    name           text NOT NULL,
    special_use    smallint NOT NULL DEFAULT 0,
    uid_validity   bigint NOT NULL,
    uid_next       bigint NOT NULL DEFAULT 1,
    highest_modseq bigint NOT NULL DEFAULT 1,
    message_count  bigint NOT NULL DEFAULT 0,
    total_size     bigint NOT NULL DEFAULT 0,
    -- Keywords ever stored in this mailbox (for the FLAGS response).
    keywords       text[] NOT NULL DEFAULT '{}',
    -- Expunges with MODSEQ at or below this were pruned from the log.
    vanished_floor bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, mailbox_id),
    UNIQUE (account_id, name)
);

CREATE TABLE subscriptions (
    account_id text NOT NULL REFERENCES accounts ON DELETE CASCADE,
    name       text NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE messages (
    account_id    text NOT NULL,
    mailbox_id    bigint NOT NULL,
    uid           bigint NOT NULL,
    modseq        bigint NOT NULL,
    flags         integer NOT NULL DEFAULT 0,   -- mailboxv1.Flag bits
    keywords      text[] NOT NULL DEFAULT '{}',
    internal_date timestamptz NOT NULL,
    sent_date     timestamptz,
    size          bigint NOT NULL,
    blob_key      text NOT NULL,
    header        bytea NOT NULL,
    envelope      bytea NOT NULL,               -- mailboxv1.Envelope (protobuf)
    structure     bytea NOT NULL,               -- mailboxv1.BodyStructure (protobuf)
    search_header text NOT NULL,
    search_body   text NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, uid),
    FOREIGN KEY (account_id, mailbox_id) REFERENCES mailboxes
);
CREATE INDEX messages_modseq ON messages (account_id, mailbox_id, modseq);
CREATE INDEX messages_unseen ON messages (account_id, mailbox_id, uid) WHERE flags & 1 = 0;
CREATE INDEX messages_blob ON messages (blob_key);

-- The expunge log, for QRESYNC VANISHED and for sessions catching up.
CREATE TABLE expunged (
    account_id text NOT NULL,
    mailbox_id bigint NOT NULL,
    uid        bigint NOT NULL,
    modseq     bigint NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged (account_id, mailbox_id, modseq);

-- Bodies being uploaded: a row is committed before the PUT and removed in the
-- transaction that first references the body. The sweeper deletes bodies whose
-- row outlived the grace period.
CREATE TABLE blob_uploads (
    blob_key   text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Bodies that may have lost their last reference (expunge, mailbox delete).
-- The sweeper deletes each one that no message row refers to.
CREATE TABLE blob_orphans (
    blob_key   text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
