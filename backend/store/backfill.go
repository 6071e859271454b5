package store

import (
	"context"
	"slices"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"mailcluster/internal/imapenvelope"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Batch sizes of BackfillEnvelopes.
const (
	DefaultBackfillBatch = 500
	MaxBackfillBatch     = 10000
)

// BackfillProgress says how far BackfillEnvelopes has come.
type BackfillProgress struct {
	Scanned    int64 `json:"scanned"`    // messages read
	Updated    int64 `json:"updated"`    // messages given their IMAP form
	Unreadable int64 `json:"unreadable"` // envelopes that do not parse, left as they are
}

// backfillHook, when set (by tests), runs after each batch has been read
// and before its rows are written.
var backfillHook func()

// backfillKey is a messages primary key.
type backfillKey struct {
	account   string
	mailboxID int64
	uid       int64
}

// BackfillEnvelopes gives every message stored before envelopes were
// rendered at ingest (its envelope has no imap field, see EnvelopeIMAP)
// the IMAP wire form of its envelope, so that FETCH sends it as it is.
// It walks the messages table in primary-key order, batch rows at a time
// (0: DefaultBackfillBatch), and writes each batch in one short
// transaction. Only the envelope column changes, and only while it still
// holds the bytes that were read: a row changed or removed meanwhile is
// left alone. MODSEQs do not change (the envelope's content is the same,
// so clients have nothing to see) and no change is published.
//
// It is safe while the cluster serves mail and can be interrupted (cancel
// ctx) and run again: rows already written are skipped, and a second run
// updates nothing. progress, if not nil, is called after every batch with
// the totals so far. It returns the number of rows updated, also when it
// stops on an error.
func (s *Store) BackfillEnvelopes(ctx context.Context, batch int, progress func(BackfillProgress)) (int64, error) {
	if batch <= 0 {
		batch = DefaultBackfillBatch
	}
	batch = min(batch, MaxBackfillBatch)
	var (
		p    BackfillProgress
		last *backfillKey
	)
	for {
		if err := ctx.Err(); err != nil {
			return p.Updated, err
		}
		keys, envs, err := s.backfillRead(ctx, last, batch)
		if err != nil {
			return p.Updated, err
		}
		if len(keys) == 0 {
			return p.Updated, nil
		}
		p.Scanned += int64(len(keys))
		last = &keys[len(keys)-1]
		var todo backfillBatch
		for i, old := range envs {
			if EnvelopeIMAP(old) != nil {
				continue
			}
			env := &mailboxv1.Envelope{}
			if err := proto.Unmarshal(old, env); err != nil {
				p.Unreadable++
				continue
			}
			env.Imap = imapenvelope.Encode(env)
			b, err := proto.Marshal(env)
			if err != nil {
				p.Unreadable++
				continue
			}
			todo.add(keys[i], old, b)
		}
		if backfillHook != nil {
			backfillHook()
		}
		n, err := s.backfillWrite(ctx, &todo)
		p.Updated += n
		if err != nil {
			return p.Updated, err
		}
		if progress != nil {
			progress(p)
		}
		if len(keys) < batch {
			return p.Updated, nil
		}
	}
}

// backfillRead reads the next batch of rows after last (nil: from the
// start) in primary-key order. It is one statement, so it needs no
// transaction; the rows are checked again when they are written.
func (s *Store) backfillRead(ctx context.Context, last *backfillKey, batch int) ([]backfillKey, [][]byte, error) {
	const cols = "SELECT account_id, mailbox_id, uid, envelope FROM messages "
	const order = " ORDER BY account_id, mailbox_id, uid LIMIT "
	var (
		rows pgx.Rows
		err  error
	)
	if last == nil {
		rows, err = s.pool.Query(ctx, cols+order+"$1", batch)
	} else {
		rows, err = s.pool.Query(ctx, cols+"WHERE (account_id, mailbox_id, uid) > ($1, $2, $3)"+order+"$4",
			last.account, last.mailboxID, last.uid, batch)
	}
	if err != nil {
		return nil, nil, classify(err)
	}
	keys := make([]backfillKey, 0, batch)
	envs := make([][]byte, 0, batch)
	var (
		k   backfillKey
		env []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&k.account, &k.mailboxID, &k.uid, &env}, func() error {
		keys = append(keys, k)
		envs = append(envs, env) // pgx scans bytea into a new slice
		return nil
	})
	if err != nil {
		return nil, nil, classify(err)
	}
	return keys, envs, nil
}

// backfillBatch holds the rows of one batch to write.
type backfillBatch struct {
	accounts        []string
	mailboxes, uids []int64
	olds, news      [][]byte
}

func (b *backfillBatch) add(k backfillKey, old, env []byte) {
	b.accounts = append(b.accounts, k.account)
	b.mailboxes = append(b.mailboxes, k.mailboxID)
	b.uids = append(b.uids, k.uid)
	b.olds = append(b.olds, old)
	b.news = append(b.news, env)
}

// backfillWrite writes a batch's new envelopes in one transaction and
// returns how many rows took them.
func (s *Store) backfillWrite(ctx context.Context, b *backfillBatch) (int64, error) {
	if len(b.uids) == 0 {
		return 0, nil
	}
	// The batch's accounts, in the order Deliver locks accounts (bytewise,
	// which is COLLATE "C"): like every writer, this transaction holds
	// the account rows before it touches their messages, so it waits for
	// a writer of those accounts or makes it wait for a few milliseconds,
	// but never deadlocks with one.
	accounts := slices.Clone(b.accounts)
	slices.Sort(accounts)
	accounts = slices.Compact(accounts)
	var n int64
	err := s.tx(ctx, func(tx pgx.Tx) error {
		n = 0
		if _, err := tx.Exec(ctx, `SELECT 1 FROM accounts WHERE account_id = ANY($1::text[])
			ORDER BY account_id COLLATE "C" FOR SHARE`, accounts); err != nil {
			return err
		}
		// One statement per row, sent together in one round trip: each
		// finds its row by the whole primary key, a plan that cannot go
		// wrong (joined with unnest of the batch, the planner may scan
		// every message of a mailbox per row). Only a row whose envelope
		// is still the one read is written: whatever changed a row
		// meanwhile wins. modseq is not touched.
		var q pgx.Batch
		for i := range b.uids {
			q.Queue(`UPDATE messages SET envelope = $4
				WHERE account_id = $1 AND mailbox_id = $2 AND uid = $3 AND envelope = $5`,
				b.accounts[i], b.mailboxes[i], b.uids[i], b.news[i], b.olds[i])
		}
		br := tx.SendBatch(ctx, &q)
		for range b.uids {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			n += tag.RowsAffected()
		}
		return br.Close()
	})
	return n, err
}
