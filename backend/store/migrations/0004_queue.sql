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

-- DKIM signing keys (RFC 6376): the newest active key of a domain signs. A
-- key starts inactive, so that its DNS record can be published first.
CREATE TABLE dkim_keys (
    domain      text NOT NULL,
    selector    text NOT NULL,
    private_key text NOT NULL,                 -- PKCS#8 PEM
    active      boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, selector)
);

-- mc_queue_record records the outcome of one delivery attempt in one round
-- trip (it runs once per delivered group, the queue's hot path): recipients
-- done (delivered or bounced) leave the queue, the others wait until their
-- next attempt, but only those still leased with p_lease (a worker that lost
-- its lease to another changes nothing). The message row lock orders
-- workers finishing the same message for different domains, so the last one
-- sees that no recipient is left and deletes the entry, making its body an
-- orphan for the sweeper. Returns -1 if the entry no longer exists, 1 if it
-- is finished, else 0.
CREATE FUNCTION mc_queue_record(p_queue_id bigint, p_lease bigint, p_done text[],
    p_retry text[], p_next timestamptz[], p_errors text[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    key text;
BEGIN
    SELECT blob_key INTO key FROM queue_messages WHERE queue_id = p_queue_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN -1;
    END IF;
    IF coalesce(array_length(p_done, 1), 0) > 0 THEN
        DELETE FROM queue_recipients WHERE queue_id = p_queue_id AND lease = p_lease AND recipient = ANY (p_done);
    END IF;
    IF coalesce(array_length(p_retry, 1), 0) > 0 THEN
        UPDATE queue_recipients q SET next_attempt = t.nxt, last_error = t.err, lease = 0
            FROM unnest(p_retry, p_next, p_errors) AS t(rcpt, nxt, err)
            WHERE q.queue_id = p_queue_id AND q.lease = p_lease AND q.recipient = t.rcpt;
    END IF;
    IF EXISTS (SELECT 1 FROM queue_recipients WHERE queue_id = p_queue_id) THEN
        RETURN 0;
    END IF;
    DELETE FROM queue_messages WHERE queue_id = p_queue_id;
    -- DO UPDATE, not DO NOTHING: it waits for a sweeper holding the orphan
    -- row (which may have judged the body still used) and inserts again
    -- once that row is gone, so the body is never forgotten.
    INSERT INTO blob_orphans (blob_key) VALUES (key)
        ON CONFLICT (blob_key) DO UPDATE SET created_at = excluded.created_at;
    RETURN 1;
END
$$;
