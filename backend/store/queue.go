package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"mailcluster/internal/mailaddr"
)

// ErrNoQueueEntry is returned for a queue id that does not exist (any
// more).
var ErrNoQueueEntry = errors.New("no such queue entry")

// Errors of the DKIM key table.
var (
	ErrKeyExists = errors.New("DKIM key exists")
	ErrNoKey     = errors.New("no such DKIM key")
)

// QueueEntry is a message's remote recipients, queued together with its
// local copies by DeliverAndQueue.
type QueueEntry struct {
	MailFrom      string   // "" is the null sender
	Recipients    []string // user@domain, each at most once
	BounceAccount string   // local account for DSNs; "" = mail them to MailFrom
	Submitter     string   // the authenticated account, if any
	Prepend       []byte   // header fields sent before the body (a DKIM-Signature)
	TraceID       string
	Lifetime      time.Duration // undelivered recipients bounce after this
}

// maxQueueRecipients bounds one entry; the backend's max-recipients is
// lower in practice.
const maxQueueRecipients = 100000

func (q *QueueEntry) validate() error {
	if len(q.Recipients) == 0 {
		return invalid("no remote recipients")
	}
	if len(q.Recipients) > maxQueueRecipients {
		return invalid("more than %d remote recipients", maxQueueRecipients)
	}
	if q.Lifetime <= 0 {
		return invalid("queue lifetime must be positive")
	}
	if q.MailFrom != "" && !mailaddr.Queueable(q.MailFrom) {
		return invalid("invalid sender address")
	}
	seen := make(map[string]bool, len(q.Recipients))
	for _, r := range q.Recipients {
		if !mailaddr.Queueable(r) {
			return invalid("invalid remote recipient address")
		}
		if seen[r] {
			return invalid("remote recipient listed twice")
		}
		seen[r] = true
	}
	return nil
}

// Domain returns the lower-cased domain of an address.
func Domain(addr string) string {
	return strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
}

// insertQueued adds q for msg's body in tx. If no local copy was stored in
// the same transaction, the queue entry is the body's first reference and
// removes its upload record (failing with ErrUploadLost if the sweeper took
// it).
func insertQueued(ctx context.Context, tx pgx.Tx, msg *NewMessage, q *QueueEntry, firstReference bool) (int64, error) {
	var id int64
	prepend := q.Prepend
	if prepend == nil {
		prepend = []byte{}
	}
	if err := tx.QueryRow(ctx, `INSERT INTO queue_messages (blob_key, size, mail_from, bounce_account, submitter, prepend, trace_id, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8::interval) RETURNING queue_id`,
		msg.BlobKey, msg.Size, q.MailFrom, q.BounceAccount, q.Submitter, prepend, q.TraceID, q.Lifetime.String()).Scan(&id); err != nil {
		return 0, err
	}
	domains := make([]string, len(q.Recipients))
	for i, r := range q.Recipients {
		domains[i] = Domain(r)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO queue_recipients (queue_id, recipient, domain)
		SELECT $1, r, d FROM unnest($2::text[], $3::text[]) AS t(r, d)`, id, q.Recipients, domains); err != nil {
		return 0, err
	}
	if firstReference {
		tag, err := tx.Exec(ctx, "DELETE FROM blob_uploads WHERE blob_key = $1", msg.BlobKey)
		if err != nil {
			return 0, err
		}
		if tag.RowsAffected() == 0 {
			return 0, ErrUploadLost
		}
	}
	return id, nil
}

// QueuedMessage is what a delivery worker needs to send a claimed message.
type QueuedMessage struct {
	ID            int64
	BlobKey       string
	Size          int64
	MailFrom      string
	BounceAccount string
	Prepend       []byte
	TraceID       string
	CreatedAt     time.Time
	ExpiresAt     time.Time
	Warned        bool
}

// Claim is a group of a message's recipients in one domain, leased to one
// worker.
type Claim struct {
	Message    QueuedMessage
	Domain     string
	Recipients []ClaimedRecipient
	Lease      int64     // the token that RecordAttempt must present
	Until      time.Time // when the lease ends (by this process's clock, conservatively)
	DBNow      time.Time // the database's clock when the claim was made
	Claimed    time.Time // this process's clock then (monotonic)
}

// ClaimedRecipient is one leased recipient.
type ClaimedRecipient struct {
	Address  string
	Attempts int // including the one now leased
}

// ClaimDue leases up to limit due recipients for lease (their next attempt
// moves past it, so another worker takes them if this one dies) and returns
// them grouped by message and domain, oldest due first. token identifies
// this claim; RecordAttempt accepts results only with it. One statement,
// committed without waiting for the WAL flush (see RecordAttempt).
func (s *Store) ClaimDue(ctx context.Context, limit int, lease time.Duration, token int64) ([]Claim, error) {
	start := time.Now()
	until := start.Add(lease)
	rows, err := s.async.Query(ctx, `WITH c AS (
			SELECT queue_id, recipient FROM queue_recipients
			WHERE next_attempt <= now() ORDER BY next_attempt LIMIT $1 FOR UPDATE SKIP LOCKED),
		u AS (
			UPDATE queue_recipients r SET next_attempt = now() + $2::interval, lease = $3,
				attempts = r.attempts + 1, last_attempt = now()
			FROM c WHERE r.queue_id = c.queue_id AND r.recipient = c.recipient
			RETURNING r.queue_id, r.domain, r.recipient, r.attempts)
		SELECT u.queue_id, u.domain, u.recipient, u.attempts, m.blob_key, m.size, m.mail_from, m.bounce_account,
			m.prepend, m.trace_id, m.created_at, m.expires_at, m.warned, now()
		FROM u JOIN queue_messages m ON m.queue_id = u.queue_id
		ORDER BY u.queue_id, u.domain, u.recipient`, limit, lease.String(), token)
	var claims []Claim
	if err == nil {
		type key struct {
			id     int64
			domain string
		}
		index := map[key]int{}
		var m QueuedMessage
		var domain, rcpt string
		var attempts int
		var dbNow time.Time
		_, err = pgx.ForEachRow(rows, []any{&m.ID, &domain, &rcpt, &attempts, &m.BlobKey, &m.Size, &m.MailFrom, &m.BounceAccount,
			&m.Prepend, &m.TraceID, &m.CreatedAt, &m.ExpiresAt, &m.Warned, &dbNow}, func() error {
			k := key{m.ID, domain}
			i, ok := index[k]
			if !ok {
				i = len(claims)
				index[k] = i
				claims = append(claims, Claim{Message: m, Domain: domain, Lease: token, Until: until, DBNow: dbNow, Claimed: start})
			}
			claims[i].Recipients = append(claims[i].Recipients, ClaimedRecipient{Address: rcpt, Attempts: attempts})
			return nil
		})
	}
	err = classify(err)
	if s.cfg.Observe != nil {
		s.cfg.Observe("ClaimDue", time.Since(start), err)
	}
	return claims, err
}

// TakeDelayWarning marks that the sender of queue entry id is told of the
// delay, once per entry whichever worker asks first, and returns every
// recipient still waiting (with its last error) for the warning; ok is
// false when the warning was taken before.
func (s *Store) TakeDelayWarning(ctx context.Context, id int64) (waiting []QueueRecipient, ok bool, err error) {
	err = s.tx(ctx, func(tx pgx.Tx) error {
		waiting, ok = nil, false
		tag, err := tx.Exec(ctx, "UPDATE queue_messages SET warned = true WHERE queue_id = $1 AND NOT warned", id)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		ok = true
		rows, err := tx.Query(ctx, "SELECT recipient, last_error FROM queue_recipients WHERE queue_id = $1 ORDER BY recipient", id)
		if err != nil {
			return err
		}
		var r QueueRecipient
		_, err = pgx.ForEachRow(rows, []any{&r.Address, &r.LastError}, func() error {
			waiting = append(waiting, r)
			return nil
		})
		return err
	})
	return waiting, ok, classify(err)
}

// ReleaseClaim hands a claim's recipients back to the queue, due now,
// without counting an attempt.
func (s *Store) ReleaseClaim(ctx context.Context, c *Claim) error {
	rcpts := make([]string, len(c.Recipients))
	for i, r := range c.Recipients {
		rcpts[i] = r.Address
	}
	_, err := s.async.Exec(ctx, `UPDATE queue_recipients SET lease = 0, next_attempt = now(), attempts = greatest(attempts - 1, 0)
		WHERE queue_id = $1 AND lease = $2 AND recipient = ANY($3)`, c.Message.ID, c.Lease, rcpts)
	return classify(err)
}

// Outcome is the result of one delivery attempt for one recipient.
type Outcome struct {
	Recipient string
	// Done: delivered, or bounced (the caller has sent the DSN); the
	// recipient leaves the queue.
	Done bool
	// Retry at this time (when not Done).
	Next  time.Time
	Error string // why it is not done yet (or why it bounced), for admins
}

// RecordAttempt records the outcomes of a claim (mc_queue_record, one
// round trip). Outcomes for recipients whose lease was taken over by
// another worker (this one was too slow) are ignored. When the last
// recipient is gone the queue entry is deleted and its body becomes an
// orphan for the sweeper. It
// reports whether the queue entry is finished, and ErrNoQueueEntry if an
// admin deleted it meanwhile.
//
// Like ClaimDue it commits without waiting for the WAL flush: a record lost
// in a PostgreSQL crash makes its recipients due again when the lease ends,
// which sends them twice, the case that at-least-once delivery already
// allows for a worker that dies; it never loses one.
func (s *Store) RecordAttempt(ctx context.Context, c *Claim, outcomes []Outcome) (finished bool, err error) {
	done, retry, errText := []string{}, []string{}, []string{}
	next := []time.Time{}
	for _, o := range outcomes {
		if o.Done {
			done = append(done, o.Recipient)
			continue
		}
		retry = append(retry, o.Recipient)
		next = append(next, o.Next)
		errText = append(errText, truncate(o.Error, 1000))
	}
	start := time.Now()
	var r int
	err = s.async.QueryRow(ctx, "SELECT mc_queue_record($1, $2, $3, $4, $5, $6)",
		c.Message.ID, c.Lease, done, retry, next, errText).Scan(&r)
	err = classify(err)
	if s.cfg.Observe != nil {
		s.cfg.Observe("RecordAttempt", time.Since(start), err)
	}
	switch {
	case err != nil:
		return false, err
	case r < 0:
		return false, ErrNoQueueEntry
	}
	return r == 1, nil
}

// deleteQueued removes a queue entry and makes its body an orphan candidate.
func deleteQueued(ctx context.Context, tx pgx.Tx, id int64, key string) error {
	if _, err := tx.Exec(ctx, "DELETE FROM queue_messages WHERE queue_id = $1", id); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO blob_orphans (blob_key) VALUES ($1)
		ON CONFLICT (blob_key) DO UPDATE SET created_at = excluded.created_at`, key)
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// --- administration ---

// QueueSummary is one queue entry as `admin queue list` shows it.
type QueueSummary struct {
	ID          int64     `json:"id"`
	MailFrom    string    `json:"mail_from"`
	Submitter   string    `json:"submitter,omitempty"`
	Size        int64     `json:"size"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	Recipients  int       `json:"recipients"` // still to be delivered
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"` // of the recipient due first
}

// QueueRecipient is one waiting recipient as `admin queue show` shows it.
type QueueRecipient struct {
	Address     string     `json:"address"`
	Attempts    int        `json:"attempts"`
	NextAttempt time.Time  `json:"next_attempt"`
	LastAttempt *time.Time `json:"last_attempt,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	Leased      bool       `json:"in_delivery"`
}

// QueueDetail is one queue entry with its waiting recipients.
type QueueDetail struct {
	QueueSummary
	BlobKey    string           `json:"blob_key"`
	TraceID    string           `json:"trace_id,omitempty"`
	Bounce     string           `json:"bounce_account,omitempty"`
	Waiting    []QueueRecipient `json:"waiting"`
	Signed     bool             `json:"dkim_signed"`
	WarnedLate bool             `json:"delay_warning_sent"`
}

// QueueList returns up to limit queue entries, oldest first.
func (s *Store) QueueList(ctx context.Context, limit int) ([]QueueSummary, error) {
	rows, err := s.pool.Query(ctx, `SELECT m.queue_id, m.mail_from, m.submitter, m.size, m.created_at, m.expires_at,
			count(r.recipient), coalesce(min(r.next_attempt), m.created_at),
			coalesce((SELECT last_error FROM queue_recipients x WHERE x.queue_id = m.queue_id ORDER BY next_attempt LIMIT 1), '')
		FROM queue_messages m LEFT JOIN queue_recipients r ON r.queue_id = m.queue_id
		GROUP BY m.queue_id ORDER BY m.created_at, m.queue_id LIMIT $1`, limit)
	if err != nil {
		return nil, classify(err)
	}
	var out []QueueSummary
	var q QueueSummary
	_, err = pgx.ForEachRow(rows, []any{&q.ID, &q.MailFrom, &q.Submitter, &q.Size, &q.CreatedAt, &q.ExpiresAt,
		&q.Recipients, &q.NextAttempt, &q.LastError}, func() error {
		out = append(out, q)
		return nil
	})
	return out, classify(err)
}

// QueueShow returns one queue entry with every waiting recipient.
func (s *Store) QueueShow(ctx context.Context, id int64) (*QueueDetail, error) {
	var d QueueDetail
	var prepend []byte
	err := s.pool.QueryRow(ctx, `SELECT queue_id, mail_from, submitter, size, created_at, expires_at, blob_key, trace_id,
			bounce_account, prepend, warned
		FROM queue_messages WHERE queue_id = $1`, id).Scan(&d.ID, &d.MailFrom, &d.Submitter, &d.Size, &d.CreatedAt,
		&d.ExpiresAt, &d.BlobKey, &d.TraceID, &d.Bounce, &prepend, &d.WarnedLate)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoQueueEntry
	}
	if err != nil {
		return nil, classify(err)
	}
	d.Signed = len(prepend) > 0
	rows, err := s.pool.Query(ctx, `SELECT recipient, attempts, next_attempt, last_attempt, last_error, lease <> 0 AND next_attempt > now()
		FROM queue_recipients WHERE queue_id = $1 ORDER BY recipient`, id)
	if err != nil {
		return nil, classify(err)
	}
	var r QueueRecipient
	if _, err := pgx.ForEachRow(rows, []any{&r.Address, &r.Attempts, &r.NextAttempt, &r.LastAttempt, &r.LastError, &r.Leased}, func() error {
		d.Waiting = append(d.Waiting, r)
		if d.NextAttempt.IsZero() || r.NextAttempt.Before(d.NextAttempt) {
			d.NextAttempt, d.LastError = r.NextAttempt, r.LastError
		}
		return nil
	}); err != nil {
		return nil, classify(err)
	}
	d.Recipients = len(d.Waiting)
	return &d, nil
}

// QueueRetry makes the waiting recipients of one entry (id > 0) or of every
// entry (id 0) due now, except those in delivery. It returns how many
// recipients it moved.
func (s *Store) QueueRetry(ctx context.Context, id int64) (int64, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE queue_recipients SET next_attempt = now()
		WHERE ($1 = 0 OR queue_id = $1) AND next_attempt > now() AND lease = 0`, id)
	if err != nil {
		return 0, classify(err)
	}
	if tag.RowsAffected() == 0 && id != 0 {
		var exists bool
		if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM queue_messages WHERE queue_id = $1)", id).Scan(&exists); err != nil {
			return 0, classify(err)
		}
		if !exists {
			return 0, ErrNoQueueEntry
		}
	}
	return tag.RowsAffected(), nil
}

// QueueDelete removes a queue entry without delivering or bouncing it. A
// worker delivering it at that moment finishes its attempt; its result is
// discarded.
func (s *Store) QueueDelete(ctx context.Context, id int64) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var key string
		if err := tx.QueryRow(ctx, "SELECT blob_key FROM queue_messages WHERE queue_id = $1 FOR UPDATE", id).Scan(&key); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNoQueueEntry
			}
			return err
		}
		return deleteQueued(ctx, tx, id, key)
	})
	return classify(err)
}

// QueueStats returns the number of queue entries and of waiting recipients,
// for metrics.
func (s *Store) QueueStats(ctx context.Context) (messages, recipients int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM queue_messages), (SELECT count(*) FROM queue_recipients)`).Scan(&messages, &recipients)
	return messages, recipients, classify(err)
}

// --- DKIM keys ---

// DKIMKey is a stored signing key.
type DKIMKey struct {
	Domain     string    `json:"domain"`
	Selector   string    `json:"selector"`
	PrivatePEM []byte    `json:"-"`
	Active     bool      `json:"active"`
	Signing    bool      `json:"signing"` // the domain's newest active key: the one that signs
	CreatedAt  time.Time `json:"created_at"`
}

// AddDKIMKey stores a key, inactive unless active is set: the newest active
// key of a domain signs its mail.
func (s *Store) AddDKIMKey(ctx context.Context, domain, selector string, pem []byte, active bool) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO dkim_keys (domain, selector, private_key, active) VALUES ($1, $2, $3, $4)`,
		strings.ToLower(domain), strings.ToLower(selector), string(pem), active)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("%w: %s already has a key with selector %s", ErrKeyExists, domain, selector)
	}
	return classify(err)
}

// ActivateDKIMKey lets a key sign (once its DNS record is published).
func (s *Store) ActivateDKIMKey(ctx context.Context, domain, selector string) error {
	tag, err := s.pool.Exec(ctx, "UPDATE dkim_keys SET active = true WHERE domain = $1 AND selector = $2",
		strings.ToLower(domain), strings.ToLower(selector))
	if err != nil {
		return classify(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s for %s", ErrNoKey, selector, domain)
	}
	return nil
}

// DKIMKeys returns every stored key, newest first within each domain, and
// marks the one that signs each domain's mail: its newest active key. This
// is the one place that rule is kept.
func (s *Store) DKIMKeys(ctx context.Context) ([]DKIMKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT domain, selector, private_key, active,
			active AND row_number() OVER (PARTITION BY domain, active ORDER BY created_at DESC, selector) = 1,
			created_at
		FROM dkim_keys ORDER BY domain, created_at DESC, selector`)
	if err != nil {
		return nil, classify(err)
	}
	var out []DKIMKey
	var k DKIMKey
	var pem string
	_, err = pgx.ForEachRow(rows, []any{&k.Domain, &k.Selector, &pem, &k.Active, &k.Signing, &k.CreatedAt}, func() error {
		k.PrivatePEM = []byte(pem)
		out = append(out, k)
		return nil
	})
	return out, classify(err)
}

// DeleteDKIMKey removes a key.
func (s *Store) DeleteDKIMKey(ctx context.Context, domain, selector string) error {
	tag, err := s.pool.Exec(ctx, "DELETE FROM dkim_keys WHERE domain = $1 AND selector = $2", strings.ToLower(domain), strings.ToLower(selector))
	if err != nil {
		return classify(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s for %s", ErrNoKey, selector, domain)
	}
	return nil
}
