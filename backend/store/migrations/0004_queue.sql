-- The outbound queue: messages waiting for delivery to remote recipients,
-- and the DKIM keys they are signed with.
--
-- A queued message refers to its body in the blob store like a message row
-- does: the body is shared with the local copies of the same delivery, and
-- the sweeper deletes a body only when neither refers to it.
CREATE TABLE queue_messages (
    queue_id       bigserial PRIMARY KEY,
    blob_key       text NOT NULL,
    size           bigint NOT NULL,
    mail_from      text NOT NULL,              -- '' is the null sender: never bounced
    bounce_account text NOT NULL DEFAULT '',   -- local account for DSNs; '' = mail them to mail_from
    submitter      text NOT NULL DEFAULT '',   -- the authenticated account that submitted it
    prepend        bytea NOT NULL DEFAULT '',  -- header fields sent before the stored body (DKIM-Signature)
    trace_id       text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,       -- undelivered recipients bounce after this
    warned         boolean NOT NULL DEFAULT false  -- a delay warning was sent
);
CREATE INDEX queue_messages_blob ON queue_messages (blob_key);

-- One row per recipient still to be delivered: delivered and bounced
-- recipients are deleted, and the message with its last recipient. A worker
-- claims due rows by moving next_attempt past its lease and setting lease to
-- its token; a worker that dies loses the rows when the lease ends.
CREATE TABLE queue_recipients (
    queue_id     bigint NOT NULL REFERENCES queue_messages ON DELETE CASCADE,
    recipient    text NOT NULL,
    domain       text NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    next_attempt timestamptz NOT NULL DEFAULT now(),
    lease        bigint NOT NULL DEFAULT 0,
    last_attempt timestamptz,
    last_error   text NOT NULL DEFAULT '',
    PRIMARY KEY (queue_id, recipient)
);
CREATE INDEX queue_recipients_due ON queue_recipients (next_attempt);

-- DKIM signing keys (RFC 6376): the newest key of a domain signs.
CREATE TABLE dkim_keys (
    domain      text NOT NULL,
    selector    text NOT NULL,
    private_key text NOT NULL,                 -- PKCS#8 PEM
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, selector)
);
