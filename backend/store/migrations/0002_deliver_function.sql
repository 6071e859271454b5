-- mc_deliver stores one message for many recipients in the calling
-- transaction, in one round trip: it is the hot path of every delivery and
-- append, and doing the same with separate statements costs eight round
-- trips per recipient. Recipients must be ordered by account (the lock
-- order) and unique per (account, mailbox). For each recipient it returns
-- the status (0 stored, 1 over quota, 2 no such mailbox), the mailbox id,
-- its UIDVALIDITY, the new UID and the MODSEQ of the stored copy. It does
-- not NOTIFY: the backend publishes changes after commit (store.notify),
-- because notifying transactions commit one at a time. If anything was stored, the upload record
-- of the body is removed; if the sweeper removed it first, the whole
-- delivery fails with SQLSTATE MC001 and nothing is stored.
CREATE FUNCTION mc_deliver(
    p_blob_key text, p_size bigint, p_internal timestamptz, p_sent timestamptz,
    p_header bytea, p_envelope bytea, p_structure bytea, p_search_header text, p_search_body text,
    p_accounts text[], p_mailboxes text[], p_flags integer[], p_keywords text[],
    p_quota_bytes bigint[], p_quota_messages bigint[])
RETURNS TABLE (r_status integer, r_mailbox_id bigint, r_uid_validity bigint, r_uid bigint, r_modseq bigint)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    cur text := NULL;
    ms bigint;
    used_bytes bigint;
    used_count bigint;
    stored integer := 0;
    kw text[];
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_accounts, 1), 0) LOOP
        IF cur IS DISTINCT FROM p_accounts[i] THEN
            IF cur IS NOT NULL THEN
                UPDATE accounts SET storage_bytes = used_bytes, message_count = used_count WHERE account_id = cur;
            END IF;
            cur := p_accounts[i];
            UPDATE accounts SET modseq = modseq + 1 WHERE account_id = cur
                RETURNING modseq, storage_bytes, message_count INTO ms, used_bytes, used_count;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'account % does not exist', cur USING ERRCODE = 'MC002';
            END IF;
        END IF;
        r_mailbox_id := 0; r_uid_validity := 0; r_uid := 0; r_modseq := ms;
        IF (p_quota_bytes[i] > 0 AND used_bytes + p_size > p_quota_bytes[i])
            OR (p_quota_messages[i] > 0 AND used_count + 1 > p_quota_messages[i]) THEN
            r_status := 1;
            RETURN NEXT;
            CONTINUE;
        END IF;
        kw := string_to_array(p_keywords[i], ' ');
        UPDATE mailboxes SET uid_next = uid_next + 1, highest_modseq = ms,
            message_count = message_count + 1, total_size = total_size + p_size,
            keywords = CASE WHEN kw <@ keywords THEN keywords
                ELSE ARRAY(SELECT DISTINCT x FROM unnest(keywords || kw) x ORDER BY x) END
            WHERE account_id = cur AND name = p_mailboxes[i]
            RETURNING uid_next - 1, uid_validity, mailbox_id INTO r_uid, r_uid_validity, r_mailbox_id;
        IF NOT FOUND THEN
            r_status := 2; r_mailbox_id := 0; r_uid_validity := 0; r_uid := 0;
            RETURN NEXT;
            CONTINUE;
        END IF;
        INSERT INTO messages (account_id, mailbox_id, uid, modseq, flags, keywords, internal_date, sent_date, size,
            blob_key, header, envelope, structure, search_header, search_body)
        VALUES (cur, r_mailbox_id, r_uid, ms, p_flags[i], kw, p_internal, p_sent, p_size,
            p_blob_key, p_header, p_envelope, p_structure, p_search_header, p_search_body);
        used_bytes := used_bytes + p_size;
        used_count := used_count + 1;
        stored := stored + 1;
        r_status := 0;
        RETURN NEXT;
    END LOOP;
    IF cur IS NOT NULL THEN
        UPDATE accounts SET storage_bytes = used_bytes, message_count = used_count WHERE account_id = cur;
    END IF;
    IF stored > 0 THEN
        DELETE FROM blob_uploads WHERE blob_key = p_blob_key;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'upload record of % was swept', p_blob_key USING ERRCODE = 'MC001';
        END IF;
    END IF;
END
$$;
