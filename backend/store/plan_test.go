package store_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"mailcluster/backend/store"
	"mailcluster/backend/store/storetest"
	"mailcluster/internal/testenv"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestHotStatementPlans checks that the statements behind Changes, run once per
// change by every session watching a mailbox, read the new messages and
// expunges through the MODSEQ indexes and not the whole mailbox, on a database shaped
// like a real one: many accounts, each with a few mailboxes, after ANALYZE.
// Without the extended statistics of migration 0006 the planner multiplies
// the selectivities of account_id and mailbox_id, expects under one row per
// mailbox, and may walk the primary key to save a sort (it did on a
// development database: 367 buffers instead of 9).
func TestHotStatementPlans(t *testing.T) {
	pg := testenv.StartPostgres(t)
	dsn := storetest.Database(t, pg)
	st, err := store.Open(context.Background(), store.Config{DSN: dsn, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// 200 accounts with 5 mailboxes each: an INBOX of 300 messages and
	// four of 10; and one account with 20,000 messages and far higher
	// MODSEQs, as a long-used account has (MODSEQs are per account).
	fill := `
INSERT INTO accounts (account_id, modseq) SELECT 'a' || a, 400 FROM generate_series(0, 200) a;
INSERT INTO mailboxes (account_id, mailbox_id, name, uid_validity)
	SELECT 'a' || a, a * 10 + b, 'box' || b, a * 10 + b FROM generate_series(0, 200) a, generate_series(0, 4) b;
INSERT INTO messages (account_id, mailbox_id, uid, modseq, internal_date, size, blob_key, header, envelope, structure, search_header, search_body)
	SELECT 'a' || a, a * 10 + b, u, CASE WHEN a = 0 THEN 4 * u ELSE b * 300 + u END, now(), 100, 'k' || a || '.' || b || '.' || u,
		'\x00', '\x00', '\x00', '', ''
	FROM generate_series(0, 200) a, generate_series(0, 4) b, generate_series(1, 20000) u
	WHERE (a = 0 AND b = 0) OR (a > 0 AND (b = 0 AND u <= 300 OR u <= 10));
INSERT INTO expunged (account_id, mailbox_id, uid, modseq)
	SELECT 'a' || a, a * 10, 1000 + u, CASE WHEN a = 0 THEN 4 * u ELSE u END
	FROM generate_series(0, 200) a, generate_series(1, 20000) u
	WHERE a = 0 OR u <= 300;
ANALYZE;`
	if _, err := conn.Exec(ctx, fill); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_custom_plan"); err != nil {
		t.Fatal(err)
	}
	// The planner knows that a mailbox holds many messages: without the
	// statistics it expects one row for 300 and plans Changes by a tie of
	// costs that the primary key wins on real databases. (With them it
	// expects the average mailbox, about 40 here: the large account's
	// mailbox is among the most common values.)
	var est []byte
	if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) SELECT uid FROM messages WHERE account_id=$1 AND mailbox_id=$2", "a77", 770).Scan(&est); err != nil {
		t.Fatal(err)
	}
	var e []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		}
	}
	if err := json.Unmarshal(est, &e); err != nil || len(e) != 1 {
		t.Fatalf("EXPLAIN: %v %s", err, est)
	}
	if r := e[0].Plan.Rows; r < 10 {
		t.Errorf("the planner expects %v rows in a 300-message mailbox", r)
	}
	// The newest message of a 300-message INBOX, and its expunge log.
	if got := planIndexes(ctx, t, conn, store.ChangedSinceSQL, "a77", 770, 299); got != "sort,messages_modseq" {
		t.Errorf("Changes reads messages with indexes %q, want messages_modseq", got)
	}
	if got := planIndexes(ctx, t, conn, store.ExpungedSinceSQL, "a77", 770, 299); got != "sort,expunged_modseq" {
		t.Errorf("Changes reads the expunge log with indexes %q, want expunged_modseq", got)
	}
	// The one statement of Changes, with both, as mc_changes runs it: with
	// its cached generic plan (migration 0010), the same for every
	// mailbox, so checked on the small and the large one.
	for _, c := range []struct {
		account string
		mailbox int64
		since   int64
	}{{"a77", 770, 299}, {"a0", 0, 79990}, {"a0", 0, 0}} {
		got, generic := nestedPlanIndexes(ctx, t, dsn, store.ChangesSQL, c.account, c.mailbox, c.since, 2001)
		if strings.Contains(got, "messages_pkey") || strings.Contains(got, "expunged_pkey") ||
			!strings.Contains(got, "messages_modseq") || !strings.Contains(got, "expunged_modseq") {
			t.Errorf("Changes of %s since %d is planned with %q, want messages_modseq and expunged_modseq", c.account, c.since, got)
		}
		if !generic {
			t.Errorf("Changes of %s since %d was planned for its parameters, want the cached generic plan", c.account, c.since)
		}
	}

	// FETCH 1:* (FLAGS ENVELOPE ...) reads the mailbox in UID order, not
	// sorted afterwards, with the backend's random_page_cost.
	if _, err := conn.Exec(ctx, "SET random_page_cost = 1.1"); err != nil {
		t.Fatal(err)
	}
	if got := planIndexes(ctx, t, conn, store.FetchSQL(true, 1), "a0", 0, 1, 1<<32-1, 0); got != "messages_pkey" {
		t.Errorf("FETCH 1:* is planned with %q, want messages_pkey and no sort", got)
	}

	// SEARCH UNSEEN reads only the index once VACUUM has marked the pages
	// all-visible (migration 0008).
	if _, err := conn.Exec(ctx, "VACUUM messages"); err != nil {
		t.Fatal(err)
	}
	st, err = store.Open(ctx, store.Config{DSN: dsn, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Changes: a few changes in one statement; 20,000 (more than it holds
	// at once) streamed from the transaction, 2,000 per response.
	for _, tc := range []struct {
		account            string
		mailbox            int64
		since              uint64
		changed, responses int
	}{{"a77", 770, 299, 1, 1}, {"a0", 0, 0, 20000, 10}} {
		changed, responses := 0, 0
		err := st.Changes(ctx, tc.account, tc.mailbox, tc.since, nil, func(r *mailboxv1.ChangesResponse) error {
			changed += len(r.Changed)
			responses++
			return nil
		})
		if err != nil || changed != tc.changed || responses != tc.responses {
			t.Errorf("Changes of %s since %d: %d changed in %d responses, %v; want %d in %d",
				tc.account, tc.since, changed, responses, err, tc.changed, tc.responses)
		}
	}

	unseen := &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_NO_FLAG, Number: uint64(mailboxv1.Flag_FLAG_SEEN)}
	sql, args, err := st.SearchSQL(ctx, "a0", 0, unseen)
	if err != nil {
		t.Fatal(err)
	}
	if got := planIndexes(ctx, t, conn, sql, args...); got != "messages_unseen (index only)" {
		t.Errorf("SEARCH UNSEEN is planned with indexes %q, want messages_unseen (index only)", got)
	}
}

// planIndexes returns the sorts and indexes of the plan of sql with args,
// comma separated, indexes marked when scanned index only, and logs the
// plan.
func planIndexes(ctx context.Context, t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var plan []byte
	if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(plan, &v); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s\n%s", sql, plan)
	return strings.Join(planNodes(v), ",")
}

// nestedPlanIndexes runs sql with args, a call of a PL/pgSQL function,
// and returns the sorts and indexes of the plans of the statements the
// function ran, as auto_explain logged them (PostgreSQL's contrib module,
// its LOG lines sent to the client as notices), and whether those plans
// were generic (their conditions name parameters, not the values).
func nestedPlanIndexes(ctx context.Context, t *testing.T, dsn, sql string, args ...any) (string, bool) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{"LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
		"SET auto_explain.log_nested_statements = on", "SET auto_explain.log_format = json",
		"SET client_min_messages = log", "SET plan_cache_mode = force_custom_plan"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var nodes []string
	generic := true
	for _, n := range notices {
		_, plan, ok := strings.Cut(n, "plan:")
		if !ok {
			continue
		}
		var v struct {
			Query string `json:"Query Text"`
			Plan  any
		}
		if err := json.Unmarshal([]byte(plan), &v); err != nil {
			t.Fatalf("auto_explain: %v\n%s", err, n)
		}
		if v.Query == sql {
			continue // the call itself
		}
		t.Logf("%s\n%s", v.Query, plan)
		nodes = append(nodes, planNodes(v.Plan)...)
		generic = generic && strings.Contains(plan, "= $1")
	}
	if nodes == nil {
		t.Fatalf("auto_explain logged no plan of a nested statement: %q", notices)
	}
	return strings.Join(nodes, ","), generic
}

// planNodes returns the sorts and indexes of the plan tree v, indexes
// marked when scanned index only.
func planNodes(v any) []string {
	var indexes []string
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			if n["Node Type"] == "Sort" {
				indexes = append(indexes, "sort")
			}
			if name, ok := n["Index Name"].(string); ok {
				if n["Node Type"] == "Index Only Scan" {
					name += " (index only)"
				}
				indexes = append(indexes, name)
			}
			for _, c := range n {
				walk(c)
			}
		case []any:
			for _, c := range n {
				walk(c)
			}
		}
	}
	walk(v)
	return indexes
}

// TestFunctionGenericPlans checks that mc_deliver and mc_changes keep
// their cached plans (migrations 0007 and 0010) although the backend's
// connections force custom ones.
func TestFunctionGenericPlans(t *testing.T) {
	ctx, conn := migratedConn(t)
	for _, fn := range []string{"mc_deliver", "mc_changes"} {
		var cfg []string
		if err := conn.QueryRow(ctx, "SELECT coalesce(proconfig, '{}') FROM pg_proc WHERE proname = $1", fn).Scan(&cfg); err != nil {
			t.Fatal(fn, err)
		}
		if strings.Join(cfg, " ") != "plan_cache_mode=force_generic_plan" {
			t.Errorf("%s's settings are %q, want plan_cache_mode=force_generic_plan", fn, cfg)
		}
	}
}

// TestMessageColumnsUseLZ4 checks migration 0009 on the test server (built
// with lz4, as PostgreSQL's packages are): the large columns of a message
// row are compressed with lz4, and a compressible row written now is.
func TestMessageColumnsUseLZ4(t *testing.T) {
	ctx, conn := migratedConn(t)
	var cols []string
	if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(attname::text ORDER BY attname), '{}') FROM pg_attribute
		WHERE attrelid = 'messages'::regclass AND attcompression = 'l'`).Scan(&cols); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cols, " ") != "envelope header search_body search_header structure" {
		t.Fatalf("columns compressed with lz4: %v", cols)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO accounts (account_id) VALUES ('lz4');
		INSERT INTO mailboxes (account_id, mailbox_id, name, uid_validity) VALUES ('lz4', 1, 'INBOX', 1)`); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("a compressible line of search text\n", 200)
	var method string
	if _, err := conn.Exec(ctx, `INSERT INTO messages (account_id, mailbox_id, uid, modseq, internal_date, size, blob_key, header, envelope, structure, search_header, search_body)
		VALUES ('lz4', 1, 1, 1, now(), 1, 'k', '\x00', '\x00', '\x00', '', $1)`, text); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT coalesce(pg_column_compression(search_body), 'none') FROM messages WHERE account_id = 'lz4'`).Scan(&method); err != nil {
		t.Fatal(err)
	}
	if method != "lz4" {
		t.Fatalf("a new row's search text is compressed with %q", method)
	}
}

// migratedConn connects to a fresh database with the schema migrated; the
// context ends, and the connection closes, with the test (a minute at most).
func migratedConn(t *testing.T) (context.Context, *pgx.Conn) {
	t.Helper()
	dsn := storetest.Database(t, testenv.StartPostgres(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return ctx, conn
}
