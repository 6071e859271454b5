package store

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// SweepUploads deletes bodies whose upload started more than grace ago and
// was never referenced (the delivery failed or its backend died). For each
// such upload it calls del with the row locked, then removes the row; a
// delivery that still tries to commit it afterwards fails with
// ErrUploadLost, so a referenced body is never deleted. It handles at most
// limit uploads and returns how many it removed.
func (s *Store) SweepUploads(ctx context.Context, grace time.Duration, limit int, del func(ctx context.Context, key string) error) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx pgx.Tx) error {
		n = 0
		rows, err := tx.Query(ctx, `SELECT blob_key FROM blob_uploads WHERE created_at < now() - $1::interval
			ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED`, grace.String(), limit)
		if err != nil {
			return err
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := del(ctx, k); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DELETE FROM blob_uploads WHERE blob_key=$1", k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// SweepOrphans deletes bodies that lost their last reference. For each
// candidate it checks, with the candidate row locked, that no message refers
// to the body (no message and no queue entry) before calling del. It handles at most limit candidates and
// returns how many bodies it deleted.
func (s *Store) SweepOrphans(ctx context.Context, limit int, del func(ctx context.Context, key string) error) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx pgx.Tx) error {
		n = 0
		rows, err := tx.Query(ctx, `SELECT o.blob_key, EXISTS (SELECT 1 FROM messages m WHERE m.blob_key = o.blob_key)
				OR EXISTS (SELECT 1 FROM queue_messages q WHERE q.blob_key = o.blob_key)
			FROM blob_orphans o ORDER BY o.created_at LIMIT $1 FOR UPDATE OF o SKIP LOCKED`, limit)
		if err != nil {
			return err
		}
		type cand struct {
			key  string
			used bool
		}
		var cands []cand
		var c cand
		if _, err := pgx.ForEachRow(rows, []any{&c.key, &c.used}, func() error { cands = append(cands, c); return nil }); err != nil {
			return err
		}
		for _, c := range cands {
			if !c.used {
				if err := del(ctx, c.key); err != nil {
					return err
				}
				n++
			}
			if _, err := tx.Exec(ctx, "DELETE FROM blob_orphans WHERE blob_key=$1", c.key); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// Change is one change notification.
type Change struct {
	Account   string
	Modseq    uint64
	MailboxID int64
	// Appended is the message a delivery stored in MailboxID (UID, flags,
	// MODSEQ), for the backend's own watchers; nil for changes read back
	// from PostgreSQL's notifications, which carry only the three fields
	// above.
	Appended *mailboxv1.MessageMeta
}

// Listen delivers change notifications from every backend to fn until ctx
// ends. After each (re)connection it calls connected, so that callers can
// catch up on changes they may have missed while disconnected. It retries
// connection failures with a short backoff.
func (s *Store) Listen(ctx context.Context, fn func(Change), connected func()) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, fn, connected)
		if ctx.Err() != nil {
			return
		}
		_ = err
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

func (s *Store) listenOnce(ctx context.Context, fn func(Change), connected func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection is in LISTEN state: never return it to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.Background())
	if _, err := pc.Exec(ctx, "LISTEN mailcluster"); err != nil {
		return err
	}
	connected()
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if c, ok := parseChange(n.Payload); ok {
			fn(c)
		}
	}
}

// parseChange parses the payload written by notify: "modseq mailbox account".
func parseChange(p string) (Change, bool) {
	a, rest, ok := strings.Cut(p, " ")
	if !ok {
		return Change{}, false
	}
	b, acct, ok := strings.Cut(rest, " ")
	if !ok {
		return Change{}, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	mb, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || acct == "" {
		return Change{}, false
	}
	return Change{Account: acct, Modseq: ms, MailboxID: mb}, true
}

// PruneExpunged forgets expunges older than retention, at most limit at a
// time, raising each affected mailbox's vanished floor. It returns how many
// entries it removed.
func (s *Store) PruneExpunged(ctx context.Context, retention time.Duration, limit int) (int, error) {
	var n int
	err := s.tx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `WITH d AS (
				DELETE FROM expunged e USING (
					SELECT account_id, mailbox_id, uid FROM expunged WHERE expunged_at < now() - $1::interval
					ORDER BY expunged_at LIMIT $2 FOR UPDATE SKIP LOCKED) old
				WHERE e.account_id = old.account_id AND e.mailbox_id = old.mailbox_id AND e.uid = old.uid
				RETURNING e.account_id, e.mailbox_id, e.modseq),
			f AS (SELECT account_id, mailbox_id, max(modseq) AS floor FROM d GROUP BY account_id, mailbox_id),
			u AS (UPDATE mailboxes m SET vanished_floor = greatest(m.vanished_floor, f.floor) FROM f
				WHERE m.account_id = f.account_id AND m.mailbox_id = f.mailbox_id)
			SELECT count(*) FROM d`, retention.String(), limit).Scan(&n)
	})
	return n, err
}
