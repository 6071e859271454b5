-- mc_changes is the statement of Changes without known UIDs (store
-- changesOne): the mailbox row, then the UIDs expunged and the messages
-- changed after MODSEQ p_since, at most p_limit of each, as arrays in UID
-- order (a message's keywords joined by spaces, which no keyword contains).
--
-- Every session that has a mailbox selected runs it after each change to
-- that mailbox (IMAP IDLE and NOOP), so it is the most frequent read. The
-- backend plans each statement for its own parameters
-- (plan_cache_mode=force_custom_plan, see store.Open), and planning this
-- one cost three times as much as running it: 0.49 against 0.15 ms of
-- PostgreSQL time per call. Its best plan does not depend on the
-- parameters (messages_modseq and expunged_modseq, bounded by the
-- LIMIT), so here it keeps the cached generic plan, as mc_deliver does
-- (0007). TestHotStatementPlans checks that plan.
CREATE FUNCTION mc_changes(p_account text, p_mailbox bigint, p_since bigint, p_limit bigint)
RETURNS TABLE (r_mailbox_id bigint, r_name text, r_special_use smallint, r_uid_validity bigint,
    r_uid_next bigint, r_highest_modseq bigint, r_message_count bigint, r_total_size bigint,
    r_keywords text[], r_vanished_floor bigint,
    r_expunged bigint[], r_uids bigint[], r_flags integer[], r_message_keywords text[], r_modseqs bigint[])
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY SELECT b.mailbox_id, b.name, b.special_use, b.uid_validity, b.uid_next, b.highest_modseq,
            b.message_count, b.total_size, b.keywords, b.vanished_floor,
            ARRAY(SELECT e.uid FROM (SELECT x.uid FROM expunged x
                WHERE x.account_id = p_account AND x.mailbox_id = p_mailbox AND x.modseq > p_since LIMIT p_limit) e
                ORDER BY e.uid),
            c.uids, c.flags, c.keywords, c.modseqs
        FROM mailboxes b, LATERAL (SELECT coalesce(array_agg(m.uid ORDER BY m.uid), '{}') AS uids,
                coalesce(array_agg(m.flags ORDER BY m.uid), '{}') AS flags,
                coalesce(array_agg(array_to_string(m.keywords, ' ') ORDER BY m.uid), '{}') AS keywords,
                coalesce(array_agg(m.modseq ORDER BY m.uid), '{}') AS modseqs
            FROM (SELECT y.uid, y.flags, y.keywords, y.modseq FROM messages y
                WHERE y.account_id = p_account AND y.mailbox_id = p_mailbox AND y.modseq > p_since LIMIT p_limit) m) c
        WHERE b.account_id = p_account AND b.mailbox_id = p_mailbox;
END
$$;
