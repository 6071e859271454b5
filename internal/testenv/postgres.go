package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Postgres is a private PostgreSQL server listening on a unix socket only.
type Postgres struct {
	Dir     string // base directory: data/, sock/, log
	SockDir string
	Proc    *Process
	bin     string
	cred    *syscall.Credential
}

var (
	pgOnce sync.Once
	pgSrv  *Postgres
	pgErr  error
	dbSeq  atomic.Int64
)

// PostgresBin returns the directory of the PostgreSQL server binaries.
func PostgresBin() (string, error) {
	if d := os.Getenv("MAILCLUSTER_PG_BIN"); d != "" {
		return d, nil
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(m) == 0 {
		return "", errMissingTool("PostgreSQL (postgresql-15)")
	}
	return filepath.Dir(m[len(m)-1]), nil
}

// StartPostgres starts the test binary's PostgreSQL server once and returns
// it. The server runs as the postgres user when the tests run as root, with
// durability settings off: it holds test data only.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	pgOnce.Do(func() { pgSrv, pgErr = startPostgres() })
	if pgErr != nil {
		t.Fatalf("testenv: postgres: %v", pgErr)
	}
	return pgSrv
}

func startPostgres() (*Postgres, error) {
	bin, err := PostgresBin()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "mctest-pg-")
	if err != nil {
		return nil, err
	}
	atExit(func() { os.RemoveAll(base) })
	p := &Postgres{Dir: base, SockDir: filepath.Join(base, "sock"), bin: bin}
	for _, d := range []string{"data", "sock"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o700); err != nil {
			return nil, err
		}
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(base, 0o755); err != nil {
			return nil, err
		}
		for _, d := range []string{base, filepath.Join(base, "data"), filepath.Join(base, "sock")} {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(base, "data"), "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	logPath := filepath.Join(base, "postgres.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", filepath.Join(base, "data"), "-k", p.SockDir,
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "shared_buffers=128MB")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.Stdout, cmd.Stderr = logf, logf
	p.Proc, err = startProcess(cmd, syscall.SIGQUIT)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p.Proc.Exited() {
			return nil, fmt.Errorf("postgres exited: %s", readTail(logPath))
		}
		if _, err := os.Stat(filepath.Join(p.SockDir, ".s.PGSQL.5432")); err == nil {
			if _, err := p.psql("postgres", "SELECT 1"); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("postgres did not start: %s", readTail(logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p, nil
}

// psql runs one SQL command through the psql client as the superuser.
func (p *Postgres) psql(db, sql string) (string, error) {
	cmd := exec.Command(filepath.Join(p.bin, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
		"-h", p.SockDir, "-U", "postgres", "-d", db, "-c", sql)
	if _, err := os.Stat(cmd.Path); err != nil {
		cmd.Path, _ = exec.LookPath("psql")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql %q: %v: %s", sql, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// Exec runs one SQL statement in database db as the superuser.
func (p *Postgres) Exec(db, sql string) (string, error) { return p.psql(db, sql) }

// DSN returns a libpq/pgx connection string for database db.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=%s sslmode=disable", p.SockDir, db)
}

// CreateDatabase creates a fresh, uniquely named database, cloned from
// template when it is not empty, and drops it when the test ends. It returns
// the database's DSN.
func (p *Postgres) CreateDatabase(t testing.TB, template string) string {
	t.Helper()
	name := fmt.Sprintf("t_%d_%d", os.Getpid(), dbSeq.Add(1))
	sql := "CREATE DATABASE " + name
	if template != "" {
		sql += " TEMPLATE " + template + " STRATEGY FILE_COPY"
	}
	if _, err := p.psql("postgres", sql); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if _, err := p.psql("postgres", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("testenv: %v", err)
		}
	})
	return p.DSN(name)
}

// CreateNamedDatabase creates database name if it does not exist and returns
// its DSN; it lives until the server stops (used for migrated templates).
func (p *Postgres) CreateNamedDatabase(name string) (string, error) {
	out, err := p.psql("postgres", "SELECT 1 FROM pg_database WHERE datname = '"+name+"'")
	if err != nil {
		return "", err
	}
	if out != "1" {
		if _, err := p.psql("postgres", "CREATE DATABASE "+name); err != nil {
			return "", err
		}
	}
	return p.DSN(name), nil
}

var (
	templatesMu sync.Mutex
	templates   = map[string]*templateDB{}
)

type templateDB struct {
	once sync.Once
	err  error
}

// Template returns the name of a database that is created and prepared
// (for example migrated) once per test binary, for CreateDatabase to clone
// for each test. prepare gets the template's DSN and must close every
// connection it opened before returning, or cloning fails.
func (p *Postgres) Template(t testing.TB, name string, prepare func(dsn string) error) string {
	t.Helper()
	templatesMu.Lock()
	tpl := templates[name]
	if tpl == nil {
		tpl = &templateDB{}
		templates[name] = tpl
	}
	templatesMu.Unlock()
	tpl.once.Do(func() {
		dsn, err := p.CreateNamedDatabase(name)
		if err == nil {
			err = prepare(dsn)
		}
		tpl.err = err
	})
	if tpl.err != nil {
		t.Fatalf("testenv: template %s: %v", name, tpl.err)
	}
	return name
}
