package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"mailcluster/backend/store"
	"mailcluster/internal/testenv"
)

func TestOutsideTx(t *testing.T) {
	if _, ok := store.OutsideTx("CREATE INDEX a ON b (c);\n"); ok {
		t.Error("an unmarked migration runs outside a transaction")
	}
	stmts, ok := store.OutsideTx("-- mailcluster: outside a transaction\n-- a comment; with a semicolon\nDROP INDEX CONCURRENTLY IF EXISTS x;\n\nCREATE INDEX CONCURRENTLY x\n  ON t (a) WHERE f & 1 = 0;\n  -- indented comment\nALTER INDEX x RENAME TO y;\n")
	want := "DROP INDEX CONCURRENTLY IF EXISTS x|CREATE INDEX CONCURRENTLY x\n  ON t (a) WHERE f & 1 = 0|ALTER INDEX x RENAME TO y"
	if got := strings.Join(stmts, "|"); !ok || got != want {
		t.Errorf("statements %q (%v), want %q", got, ok, want)
	}
}

// Backends starting at once on an empty database migrate it once, also
// through the migration that runs outside a transaction (0008, CREATE INDEX
// CONCURRENTLY, which would wait for a backend blocked on the migration
// lock if that wait held a snapshot), and the rebuilt index is valid.
func TestConcurrentMigrations(t *testing.T) {
	pg := testenv.StartPostgres(t)
	dsn := pg.CreateDatabase(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := store.Open(ctx, store.Config{DSN: dsn, MaxConns: 2})
			if err == nil {
				st.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("backend %d: %v", i, err)
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var def string
	var valid bool
	if err := conn.QueryRow(ctx, `SELECT pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'messages_unseen'`).Scan(&def, &valid); err != nil {
		t.Fatal(err)
	}
	if !valid || !strings.Contains(def, "INCLUDE (modseq)") {
		t.Errorf("messages_unseen: %s (valid %v)", def, valid)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname = 'messages_unseen_modseq'").Scan(&n); err != nil || n != 0 {
		t.Errorf("messages_unseen_modseq left behind: %d %v", n, err)
	}
}
