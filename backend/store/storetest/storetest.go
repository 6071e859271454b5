// Package storetest gives tests a fresh PostgreSQL database with the
// backend's schema, cloned from a template migrated once per test binary.
package storetest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailcluster/backend/store"
	"mailcluster/internal/testenv"
)

// Database returns the DSN of a new database with the current schema,
// dropped when the test ends.
func Database(t testing.TB, pg *testenv.Postgres) string {
	t.Helper()
	return pg.CreateDatabase(t, Template(t, pg))
}

// Template returns the name of this test binary's migrated template
// database. The name is the binary's, so that test binaries of different
// packages sharing one PostgreSQL never prepare the same template at once.
func Template(t testing.TB, pg *testenv.Postgres) string {
	t.Helper()
	return pg.Template(t, templateName(), func(dsn string) error {
		st, err := store.Open(context.Background(), store.Config{DSN: dsn, MaxConns: 2})
		if err != nil {
			return err
		}
		st.Close()
		return nil
	})
}

func templateName() string {
	base := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	var b strings.Builder
	b.WriteString("tmpl_")
	for _, r := range strings.ToLower(base) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
