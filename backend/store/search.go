package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Search evaluates a criteria tree over a mailbox in PostgreSQL and returns
// the matching UIDs in ascending order with the highest MODSEQ among them.
// The tree is validated first: depth and size are limited, and every node
// must be well formed.
func (s *Store) Search(ctx context.Context, account string, mailboxID int64, key *mailboxv1.SearchKey) (_ []uint32, _ uint64, err error) {
	if key == nil {
		key = &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_ALL}
	}
	nodes := 0
	if err = s.checkSearch(key, 1, &nodes); err != nil {
		return nil, 0, err
	}
	var uids []uint32
	var highest uint64
	run := func(q querier, tx pgx.Tx) error {
		uids, highest = nil, 0
		sql, args, err := s.searchSQL(ctx, tx, account, mailboxID, key)
		if err != nil {
			return err
		}
		rows, err := q.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		var uid, ms int64
		_, err = pgx.ForEachRow(rows, []any{&uid, &ms}, func() error {
			uids = append(uids, uint32(uid))
			if uint64(ms) > highest {
				highest = uint64(ms)
			}
			return nil
		})
		return err
	}
	if !hasStar(key) {
		// One statement, no transaction: only an empty result needs the
		// mailbox looked up, to tell an unknown mailbox from no match.
		if s.cfg.Observe != nil {
			start := time.Now()
			defer func() { s.cfg.Observe("Search", time.Since(start), err) }()
		}
		err = run(s.pool, nil)
		if err != nil || len(uids) > 0 {
			return uids, highest, classify(err)
		}
		var one int
		err = s.pool.QueryRow(ctx, "SELECT 1 FROM mailboxes WHERE account_id=$1 AND mailbox_id=$2", account, mailboxID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			err = ErrNotFound
		}
		return uids, highest, classify(err)
	}
	// "*" in a UID set is the highest UID: read with the rows in one
	// snapshot.
	err = s.readTx(ctx, func(tx pgx.Tx) error {
		if _, err := mailboxByID(ctx, tx, account, mailboxID, false); err != nil {
			return err
		}
		return run(tx, tx)
	})
	return uids, highest, err
}

// searchSQL returns the statement that evaluates a validated criteria tree
// and its arguments. tx reads the highest UID for "*" (nil when the tree
// has none).
func (s *Store) searchSQL(ctx context.Context, tx pgx.Tx, account string, mailboxID int64, key *mailboxv1.SearchKey) (string, []any, error) {
	b := &sqlBuilder{args: []any{account, mailboxID}}
	where, err := b.key(ctx, s, tx, account, mailboxID, key)
	if err != nil {
		return "", nil, err
	}
	return "SELECT m.uid, m.modseq FROM messages m WHERE m.account_id=$1 AND m.mailbox_id=$2 AND (" +
		where + ") ORDER BY m.uid", b.args, nil
}

// hasStar reports whether a UID set in the tree has "*" (end 0).
func hasStar(k *mailboxv1.SearchKey) bool {
	for _, r := range k.GetUids().GetRanges() {
		if r.GetEnd() == 0 {
			return true
		}
	}
	for _, c := range k.Children {
		if hasStar(c) {
			return true
		}
	}
	return false
}

func (s *Store) checkSearch(k *mailboxv1.SearchKey, depth int, nodes *int) error {
	*nodes++
	if *nodes > s.cfg.MaxSearchKeys {
		return invalid("search has more than %d keys", s.cfg.MaxSearchKeys)
	}
	if depth > s.cfg.MaxSearchDepth {
		return invalid("search nesting is deeper than %d", s.cfg.MaxSearchDepth)
	}
	switch k.Op {
	case mailboxv1.SearchKey_OP_AND, mailboxv1.SearchKey_OP_OR:
		if len(k.Children) == 0 {
			return invalid("AND/OR without operands")
		}
	case mailboxv1.SearchKey_OP_NOT:
		if len(k.Children) != 1 {
			return invalid("NOT takes one operand")
		}
	default:
		if len(k.Children) != 0 {
			return invalid("search key %s takes no operands", k.Op)
		}
	}
	switch k.Op {
	case mailboxv1.SearchKey_OP_ALL, mailboxv1.SearchKey_OP_AND, mailboxv1.SearchKey_OP_OR, mailboxv1.SearchKey_OP_NOT,
		mailboxv1.SearchKey_OP_BEFORE, mailboxv1.SearchKey_OP_SINCE, mailboxv1.SearchKey_OP_SENT_BEFORE,
		mailboxv1.SearchKey_OP_SENT_SINCE, mailboxv1.SearchKey_OP_LARGER, mailboxv1.SearchKey_OP_SMALLER,
		mailboxv1.SearchKey_OP_MODSEQ:
	case mailboxv1.SearchKey_OP_UID:
		if k.Uids == nil || len(k.Uids.Ranges) == 0 {
			return invalid("UID search without a set")
		}
	case mailboxv1.SearchKey_OP_FLAG, mailboxv1.SearchKey_OP_NO_FLAG:
		if (k.Number == 0) == (k.Text == "") {
			return invalid("flag search needs one system flag or one keyword")
		}
		if k.Number&^uint64(systemFlagMask) != 0 {
			return invalid("unknown system flag")
		}
	case mailboxv1.SearchKey_OP_HEADER:
		if k.Field == "" || len(k.Field) > 200 || strings.ContainsAny(k.Field, ": \t\r\n") {
			return invalid("invalid header field name")
		}
	case mailboxv1.SearchKey_OP_BODY, mailboxv1.SearchKey_OP_TEXT:
	default:
		return invalid("unknown search key %d", k.Op)
	}
	if len(k.Text) > 1000 {
		return invalid("search text is too long")
	}
	for _, c := range k.Children {
		if c == nil {
			return invalid("empty search key")
		}
		if err := s.checkSearch(c, depth+1, nodes); err != nil {
			return err
		}
	}
	return nil
}

type sqlBuilder struct{ args []any }

func (b *sqlBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return fmt.Sprintf("$%d", len(b.args))
}

// likeEscape escapes a substring for ILIKE '%...%'.
func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

func (b *sqlBuilder) key(ctx context.Context, s *Store, tx pgx.Tx, account string, mailboxID int64, k *mailboxv1.SearchKey) (string, error) {
	switch k.Op {
	case mailboxv1.SearchKey_OP_ALL:
		return "true", nil
	case mailboxv1.SearchKey_OP_AND, mailboxv1.SearchKey_OP_OR:
		sep := " AND "
		if k.Op == mailboxv1.SearchKey_OP_OR {
			sep = " OR "
		}
		parts := make([]string, 0, len(k.Children))
		for _, c := range k.Children {
			p, err := b.key(ctx, s, tx, account, mailboxID, c)
			if err != nil {
				return "", err
			}
			parts = append(parts, "("+p+")")
		}
		return strings.Join(parts, sep), nil
	case mailboxv1.SearchKey_OP_NOT:
		p, err := b.key(ctx, s, tx, account, mailboxID, k.Children[0])
		if err != nil {
			return "", err
		}
		return "NOT (" + p + ")", nil
	case mailboxv1.SearchKey_OP_UID:
		f, err := s.uidSet(ctx, tx, account, mailboxID, k.Uids, false)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("EXISTS (SELECT 1 FROM unnest(%s::bigint[], %s::bigint[]) r(s, e) WHERE m.uid BETWEEN r.s AND r.e)",
			b.arg(f.starts), b.arg(f.ends)), nil
	case mailboxv1.SearchKey_OP_FLAG, mailboxv1.SearchKey_OP_NO_FLAG:
		var cond string
		if k.Text != "" {
			cond = b.arg(k.Text) + " = ANY(m.keywords)"
		} else {
			// The bit is written into the statement, not passed as a
			// parameter: the planner can then use the partial index of
			// unseen messages (messages_unseen) for SEARCH UNSEEN. Only
			// the five system flag bits get here (checkSearch).
			cond = fmt.Sprintf("m.flags & %d <> 0", int32(k.Number))
		}
		if k.Op == mailboxv1.SearchKey_OP_NO_FLAG {
			return "NOT (" + cond + ")", nil
		}
		return cond, nil
	case mailboxv1.SearchKey_OP_BEFORE:
		return "m.internal_date < " + b.arg(sqlTime(k.Time)), nil
	case mailboxv1.SearchKey_OP_SINCE:
		return "m.internal_date >= " + b.arg(sqlTime(k.Time)), nil
	case mailboxv1.SearchKey_OP_SENT_BEFORE:
		// No usable Date header: not before, not since (and so NOT matches).
		return "coalesce(m.sent_date < " + b.arg(sqlTime(k.Time)) + ", false)", nil
	case mailboxv1.SearchKey_OP_SENT_SINCE:
		return "coalesce(m.sent_date >= " + b.arg(sqlTime(k.Time)) + ", false)", nil
	case mailboxv1.SearchKey_OP_LARGER:
		return "m.size > " + b.arg(sqlInt(k.Number)), nil
	case mailboxv1.SearchKey_OP_SMALLER:
		return "m.size < " + b.arg(sqlInt(k.Number)), nil
	case mailboxv1.SearchKey_OP_MODSEQ:
		return "m.modseq >= " + b.arg(sqlInt(k.Number)), nil
	case mailboxv1.SearchKey_OP_HEADER:
		// search_header holds one unfolded "Name: value" line per field.
		// The field name matches case-insensitively; the value as a
		// case-insensitive substring (RFC 3501 section 6.4.4).
		if k.Text == "" {
			return fmt.Sprintf("(E'\\n' || m.search_header) ILIKE %s", b.arg("%\n"+strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(k.Field)+":%")), nil
		}
		return fmt.Sprintf("EXISTS (SELECT 1 FROM regexp_split_to_table(m.search_header, E'\\n') l WHERE lower(split_part(l, ':', 1)) = lower(%s) AND substr(l, length(split_part(l, ':', 1)) + 2) ILIKE %s)",
			b.arg(k.Field), b.arg(likeEscape(k.Text))), nil
	case mailboxv1.SearchKey_OP_BODY:
		return "m.search_body ILIKE " + b.arg(likeEscape(k.Text)), nil
	case mailboxv1.SearchKey_OP_TEXT:
		a := b.arg(likeEscape(k.Text))
		return "(m.search_header ILIKE " + a + " OR m.search_body ILIKE " + a + ")", nil
	}
	return "", invalid("unknown search key")
}
