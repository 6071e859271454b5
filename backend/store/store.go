// Package store keeps mailbox metadata in PostgreSQL: accounts, mailboxes,
// messages, flags, UIDs, MODSEQs, the expunge log and the bookkeeping of
// stored bodies. It is the only package that imports pgx.
//
// Every method is one transaction. A method that returns nil has committed;
// one that returns an error has changed nothing. Errors are the sentinel
// values below (test with errors.Is) or ErrUnavailable wrapping the cause
// when PostgreSQL could not be reached or the transaction could not finish.
package store

import (
	"bufio"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors returned by the store. The gRPC layer maps each to one status code.
var (
	ErrNotFound     = errors.New("no such mailbox")
	ErrNoMessage    = errors.New("no such message")
	ErrExists       = errors.New("mailbox already exists")
	ErrForbidden    = errors.New("not allowed on this mailbox")
	ErrOverQuota    = errors.New("over quota")
	ErrUnavailable  = errors.New("metadata store unavailable")
	ErrUploadLost   = errors.New("upload record was swept before commit")
	errInvalidInput = errors.New("invalid argument")
)

// InvalidError is returned for bad input; its message is safe to show.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }
func (e *InvalidError) Is(target error) bool {
	return target == errInvalidInput
}

// IsInvalid reports whether err is an *InvalidError.
func IsInvalid(err error) bool { return errors.Is(err, errInvalidInput) }

func invalid(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}

// sqlInt converts an unsigned protocol number (a MODSEQ or a size) for SQL.
// No stored value exceeds math.MaxInt64, so a larger number clamps to it
// and keeps its meaning instead of wrapping negative.
func sqlInt(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// The earliest and latest times stored or compared (years 1 to 9999).
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// sqlTime converts Unix seconds for SQL, clamped to [minTime, maxTime], so
// that a date beyond them keeps its meaning instead of overflowing.
func sqlTime(sec int64) time.Time {
	switch {
	case sec < minTime.Unix():
		return minTime
	case sec > maxTime.Unix():
		return maxTime
	}
	return time.Unix(sec, 0)
}

// Config configures the connection pool.
type Config struct {
	DSN      string
	MaxConns int32
	// RandomPageCost, if not 0, is set as random_page_cost on every
	// connection.
	RandomPageCost float64
	// Limits on input, checked before any SQL runs.
	MaxUIDRanges      int // ranges in one UID set
	MaxSearchDepth    int // nesting of a search criteria tree
	MaxSearchKeys     int // nodes in a search criteria tree
	MaxMailboxNameLen int // bytes
	MaxMailboxDepth   int // hierarchy levels
	MaxMailboxes      int // per account
	// Published, if set, receives the changes of every committed
	// transaction, to publish them with Publish (batched, asynchronously);
	// when nil they are published synchronously after each commit.
	Published func([]Change)
	// Observe, if set, is called after every transaction with the name of
	// the store method, its duration and its error (for metrics).
	Observe func(op string, d time.Duration, err error)
}

func (c *Config) defaults() {
	if c.MaxConns == 0 {
		c.MaxConns = 32
	}
	if c.MaxUIDRanges == 0 {
		c.MaxUIDRanges = 10000
	}
	if c.MaxSearchDepth == 0 {
		c.MaxSearchDepth = 32
	}
	if c.MaxSearchKeys == 0 {
		c.MaxSearchKeys = 1000
	}
	if c.MaxMailboxNameLen == 0 {
		c.MaxMailboxNameLen = 512
	}
	if c.MaxMailboxDepth == 0 {
		c.MaxMailboxDepth = 32
	}
	if c.MaxMailboxes == 0 {
		c.MaxMailboxes = 10000
	}
}

// Store is the PostgreSQL metadata store. It is safe for concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	async *pgxpool.Pool // synchronous_commit=off
	cfg   Config
	// known holds account ids known to exist (with default mailboxes), so
	// that ensureAccount costs no query for them. It is a cache: when it
	// reaches maxKnownAccounts it starts over.
	knownMu sync.RWMutex
	known   map[string]struct{}
}

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key that serialises schema migration
// across backends starting at once.
const migrationLock = 0x6d61696c636c7573 // "mailclus"

// Open connects to PostgreSQL and applies any pending migrations. Several
// backends may call Open at once: migrations run under an advisory lock.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.defaults()
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres DSN: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	// Every statement is planned for its own parameters. pgx prepares
	// statements, and after five runs PostgreSQL may switch to a generic
	// plan made without them: for one mailbox among many it then guesses a
	// handful of rows per mailbox and reads a 10,000-message mailbox whole
	// to change one message (STORE: 19 ms instead of under 1 ms).
	// Planning again costs a fraction of that.
	pc.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	// Rows are read through a 64 KiB buffer: pgx reads at most 8 KiB per
	// system call, PostgreSQL's own send size, and for a FETCH of 10,000
	// messages (6 MB of rows) those reads were a fifth of the backend's
	// CPU. Under load several of PostgreSQL's writes wait in the socket
	// and one read takes them all. 64 KiB per connection. (pgconn's
	// SyncConn cannot see bytes held in this buffer; the store never
	// hijacks a pgconn.)
	pc.ConnConfig.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, 64<<10), w)
	}
	if cfg.RandomPageCost != 0 {
		pc.ConnConfig.RuntimeParams["random_page_cost"] = strconv.FormatFloat(cfg.RandomPageCost, 'f', -1, 64)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	// A small second pool whose transactions commit without waiting for
	// the WAL flush, for writes whose loss in a crash loses no mail
	// (upload records, change notifications).
	ac := pc.Copy()
	ac.MaxConns = max(2, cfg.MaxConns/4)
	ac.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	async, err := pgxpool.NewWithConfig(ctx, ac)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool, async: async, cfg: cfg}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the pools.
func (s *Store) Close() {
	s.pool.Close()
	s.async.Close()
}

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Migrate applies pending migrations (Open already does).
func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Release()
	// The lock is polled, not waited for: a session blocked in
	// pg_advisory_lock holds a snapshot, and CREATE INDEX CONCURRENTLY in
	// the backend that migrates waits for every older snapshot, which
	// would close a cycle with the backends waiting for its lock.
	for {
		var got bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(migrationLock)).Scan(&got); err != nil {
			return fmt.Errorf("postgres: migration lock: %w", err)
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres: migration lock: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrationLock))
	// A backend stopped during a long migration (an index build) closes
	// its connection, but PostgreSQL notices only when it next writes to
	// it: the session would finish the build and hold the lock meanwhile.
	// Have it check the connection every 2 s (PostgreSQL 14 and later;
	// older servers do not know the setting and go without), and put the
	// pooled connection back as it was.
	if _, err := conn.Exec(ctx, "SET client_connection_check_interval = '2s'"); err == nil {
		defer conn.Exec(context.WithoutCancel(ctx), "RESET client_connection_check_interval")
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
		var done bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version=$1)", version).Scan(&done); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if done {
			continue
		}
		sql, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if stmts, ok := outsideTx(string(sql)); ok {
			for _, st := range stmts {
				if _, err = conn.Exec(ctx, st); err != nil {
					break
				}
			}
			if err == nil {
				_, err = conn.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", version)
			}
		} else {
			err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, string(sql)); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", version)
				return err
			})
		}
		if err != nil {
			return fmt.Errorf("postgres: migration %s: %w", version, err)
		}
	}
	return nil
}

// noTxMarker, as a migration's first line, makes it run statement by
// statement outside a transaction (CREATE INDEX CONCURRENTLY cannot run in
// one). Such a migration must be safe to run again from the start, since a
// crash may stop it half-way, and its statements must not contain ';'.
const noTxMarker = "-- mailcluster: outside a transaction"

// outsideTx splits a migration marked with noTxMarker into its statements;
// ok is false for an ordinary migration.
func outsideTx(sql string) (stmts []string, ok bool) {
	if !strings.HasPrefix(sql, noTxMarker+"\n") {
		return nil, false
	}
	var b strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line + "\n")
		}
	}
	for _, st := range strings.Split(b.String(), ";") {
		if st = strings.TrimSpace(st); st != "" {
			stmts = append(stmts, st)
		}
	}
	return stmts, true
}

// tx runs fn in a transaction, retrying serialization failures and deadlocks
// a few times, and classifies the error.
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	op := ""
	if s.cfg.Observe != nil {
		op = caller()
	}
	return s.txNamed(ctx, op, fn)
}

// txNamed is tx with the operation name for metrics given. Changes that
// fn records with notify are published after a successful commit.
func (s *Store) txNamed(ctx context.Context, op string, fn func(tx pgx.Tx) error) (err error) {
	if s.cfg.Observe != nil {
		start := time.Now()
		defer func() { s.cfg.Observe(op, time.Since(start), err) }()
	}
	var changes []Change
	for attempt := 0; attempt < 5; attempt++ {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			changes = changes[:0]
			pending.Store(tx, &changes)
			defer pending.Delete(tx)
			return fn(tx)
		})
		if err == nil {
			if len(changes) > 0 {
				s.published(ctx, changes)
			}
			return nil
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01") {
			time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
			continue
		}
		break
	}
	return classify(err)
}

// readTx runs fn in a read-only repeatable-read transaction, so that its
// queries see one snapshot.
func (s *Store) readTx(ctx context.Context, fn func(tx pgx.Tx) error) (err error) {
	if s.cfg.Observe != nil {
		op, start := caller(), time.Now()
		defer func() { s.cfg.Observe(op, time.Since(start), err) }()
	}
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
	return classify(err)
}

// classify turns driver errors into ErrUnavailable; domain errors pass.
func classify(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNoMessage), errors.Is(err, ErrExists),
		errors.Is(err, ErrForbidden), errors.Is(err, ErrOverQuota), errors.Is(err, errInvalidInput),
		errors.Is(err, ErrUploadLost), errors.Is(err, errNoChange), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrNoQueueEntry), errors.Is(err, ErrKeyExists), errors.Is(err, ErrNoKey):
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "MC001" {
		return ErrUploadLost
	}
	if errors.As(err, &pe) {
		// A constraint or data error here is a bug, not the client's fault;
		// a resource or connection error is temporary. Both are reported as
		// unavailable with the cause attached for the log.
		return fmt.Errorf("%w: %s (%s)", ErrUnavailable, pe.Message, pe.Code)
	}
	var ne net.Error
	if errors.As(err, &ne) || pgconn.SafeToRetry(err) || strings.Contains(err.Error(), "connect") {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// maxKnownAccounts bounds the memory of the known-accounts cache.
const maxKnownAccounts = 1 << 20

// defaultMailboxes are created for a new account on first use (RFC 6154).
var defaultMailboxes = []struct {
	name string
	use  int16
}{
	{"INBOX", 0}, {"Drafts", 3}, {"Sent", 6}, {"Trash", 7}, {"Junk", 5}, {"Archive", 2},
}

// ensureAccount creates the account row and its default mailboxes the first
// time an account is used. It is cheap for known accounts.
func (s *Store) ensureAccount(ctx context.Context, account string) error {
	if account == "" {
		return invalid("account id is empty")
	}
	if len(account) > 256 {
		return invalid("account id is too long")
	}
	s.knownMu.RLock()
	_, ok := s.known[account]
	s.knownMu.RUnlock()
	if ok {
		return nil
	}
	err := s.txNamed(ctx, "EnsureAccount", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "INSERT INTO accounts (account_id) VALUES ($1) ON CONFLICT DO NOTHING", account)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		for _, m := range defaultMailboxes {
			if _, err := tx.Exec(ctx, `INSERT INTO mailboxes (account_id, mailbox_id, name, special_use, uid_validity)
				SELECT $1, id, $2, $3, id FROM (SELECT nextval('mailbox_ids') AS id) n`, account, m.name, m.use); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO subscriptions (account_id, name) VALUES ($1, $2)", account, m.name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.knownMu.Lock()
	if s.known == nil || len(s.known) >= maxKnownAccounts {
		s.known = make(map[string]struct{})
	}
	s.known[account] = struct{}{}
	s.knownMu.Unlock()
	return nil
}

// nextModseq locks the account row and returns the next MODSEQ together
// with the account's usage. All writes lock the account row first, so
// transactions of one account never deadlock.
func nextModseq(ctx context.Context, tx pgx.Tx, account string) (modseq, bytes, count int64, err error) {
	err = tx.QueryRow(ctx, `UPDATE accounts SET modseq = modseq + 1 WHERE account_id = $1
		RETURNING modseq, storage_bytes, message_count`, account).Scan(&modseq, &bytes, &count)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	return
}

// pending holds the changes recorded by transactions in progress, keyed by
// their pgx.Tx, so that notify needs nothing but the transaction.
var pending sync.Map // pgx.Tx → *[]Change

// notify records a change on the account, to be published to every
// backend's watchers once the transaction commits. Publishing happens after
// the commit and outside it: PostgreSQL serialises the commits of all
// transactions that NOTIFY (they hold a database-wide lock through their
// commit), which would cap deliveries at one WAL flush at a time.
func notify(_ context.Context, tx pgx.Tx, account string, modseq int64, mailboxID int64) error {
	if p, ok := pending.Load(tx); ok {
		c := p.(*[]Change)
		*c = append(*c, Change{Account: account, Modseq: uint64(modseq), MailboxID: mailboxID})
	}
	return nil
}

// published hands committed changes to Config.Published, or publishes them
// at once when that is not set.
func (s *Store) published(ctx context.Context, changes []Change) {
	if s.cfg.Published != nil {
		s.cfg.Published(changes)
		return
	}
	_ = s.Publish(context.WithoutCancel(ctx), changes)
}

// Publish sends change notifications to every backend (PostgreSQL NOTIFY
// on the channel "mailcluster", payload "modseq mailbox account"). The
// transaction commits asynchronously: a notification lost in a crash is
// recovered by watchers resynchronising when their connection comes back.
func (s *Store) Publish(ctx context.Context, changes []Change) error {
	payloads := make([]string, len(changes))
	for i, c := range changes {
		payloads[i] = fmt.Sprintf("%d %d %s", c.Modseq, c.MailboxID, c.Account)
	}
	_, err := s.async.Exec(ctx, "SELECT pg_notify('mailcluster', p) FROM unnest($1::text[]) p", payloads)
	return classify(err)
}

// caller names the exported Store method that runs a transaction, for
// metrics labels (a small, fixed set).
func caller() string {
	pc := make([]uintptr, 8)
	n := runtime.Callers(3, pc)
	frames := runtime.CallersFrames(pc[:n])
	for {
		f, more := frames.Next()
		name := f.Function[strings.LastIndex(f.Function, ".")+1:]
		if name != "" && name[0] >= 'A' && name[0] <= 'Z' {
			return name
		}
		if !more {
			return "other"
		}
	}
}
