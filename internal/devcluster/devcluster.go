// Package devcluster runs a complete mailcluster on one machine, for
// development, demos and load tests: a private PostgreSQL, a private OpenLDAP
// slapd seeded with demo accounts, backends and frontends as child
// processes of the mailcluster binary, with a local CA and certificates so
// that TLS and mTLS work. All state lives under one directory, so running it
// again keeps the mail.
package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"mailcluster/internal/pki"
)

// Config configures the local cluster.
type Config struct {
	Dir       string `name:"dir" help:"directory holding all state (database, directory, bodies, certificates, logs)"`
	Backends  int    `name:"backend-count" help:"number of backend processes"`
	Frontends int    `name:"frontend-count" help:"number of frontend processes"`
	BasePort  int    `name:"base-port" help:"first port of the range the cluster listens on (see README)"`
	Users     int    `name:"users" help:"provision user1..userN@example.test (password secret) for load tests; 0: only the demo accounts"`
	BlobStore string `name:"blob-store" help:"where backends keep bodies: fs (under the state directory) or s3 (the MAILCLUSTER_S3_* settings from the environment)"`
	Repo      string `name:"repo" help:"repository root (for deploy/ldap); default: found from the working directory"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Dir: ".dev", Backends: 2, Frontends: 2, BasePort: 11000, BlobStore: "fs"}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("dir: is required"))
	}
	if c.Backends < 1 || c.Backends > 9 {
		errs = append(errs, errors.New("backend-count: must be 1 to 9"))
	}
	if c.Frontends < 0 || c.Frontends > 9 {
		errs = append(errs, errors.New("frontend-count: must be 0 to 9"))
	}
	if c.BasePort < 1024 || c.BasePort > 65535-1000 {
		errs = append(errs, errors.New("base-port: must be 1024 to 64535"))
	}
	if c.BlobStore != "fs" && c.BlobStore != "s3" {
		errs = append(errs, errors.New("blob-store: must be fs or s3"))
	}
	if c.BlobStore == "s3" && (os.Getenv("MAILCLUSTER_S3_ENDPOINT") == "" || os.Getenv("MAILCLUSTER_S3_BUCKET") == "") {
		errs = append(errs, errors.New("blob-store: s3 needs MAILCLUSTER_S3_ENDPOINT, MAILCLUSTER_S3_BUCKET and the S3 keys in the environment"))
	}
	if c.Users < 0 {
		errs = append(errs, errors.New("users: must not be negative"))
	}
	return errors.Join(errs...)
}

// Ports of the cluster, derived from the base port B:
//
//	B+389           slapd (ldap://127.0.0.1)
//	B+900+i         backend i's gRPC (i from 1)
//	B+950+i         backend i's /metrics, /healthz, /readyz
//	B+100*i+25/87/65/43/93/10/95   frontend i's SMTP, submission, submissions,
//	                IMAP, IMAPS, POP3, POP3S; B+100*i+80 its /metrics
func (c *Config) ldapPort() int             { return c.BasePort + 389 }
func (c *Config) backendPort(i int) int     { return c.BasePort + 900 + i }
func (c *Config) frontendPort(i, p int) int { return c.BasePort + 100*i + p }

// Cluster is a running local cluster.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	out    io.Writer
	dir    string
	repo   string
	self   string
	pgCred *syscall.Credential

	mu    sync.Mutex
	procs []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	stop syscall.Signal
}

// Run starts the cluster, prints how to reach it to out, and runs until ctx
// ends; then it stops every process it started, newest first.
func Run(ctx context.Context, cfg Config, log *slog.Logger, out io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	c := &Cluster{cfg: cfg, log: log, out: out}
	var err error
	if c.dir, err = filepath.Abs(cfg.Dir); err != nil {
		return err
	}
	if c.self, err = os.Executable(); err != nil {
		return err
	}
	if c.repo, err = findRepo(cfg.Repo); err != nil {
		return err
	}
	defer c.stopAll()
	if err := c.start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	fmt.Fprintln(out, "stopping…")
	return nil
}

func findRepo(hint string) (string, error) {
	if hint != "" {
		return filepath.Abs(hint)
	}
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "deploy", "ldap", "seed.ldif")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("repo: deploy/ldap not found from the working directory; set -repo")
		}
		d = parent
	}
}

func (c *Cluster) path(p ...string) string { return filepath.Join(append([]string{c.dir}, p...)...) }

func (c *Cluster) start(ctx context.Context) error {
	for _, d := range []string{"pki", "pg", "ldap/data", "blobs", "logs", "run"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return err
		}
	}
	if err := c.certificates(); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := c.postgres(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if err := c.slapd(ctx); err != nil {
		return fmt.Errorf("slapd: %w", err)
	}
	for i := 1; i <= c.cfg.Backends; i++ {
		if err := c.backend(ctx, i); err != nil {
			return fmt.Errorf("backend-%d: %w", i, err)
		}
	}
	for i := 1; i <= c.cfg.Frontends; i++ {
		if err := c.frontend(ctx, i); err != nil {
			return fmt.Errorf("frontend-%d: %w", i, err)
		}
	}
	if c.cfg.Users > 0 {
		if err := c.provision(ctx); err != nil {
			return fmt.Errorf("users: %w", err)
		}
	}
	c.summary()
	return nil
}

// certificates makes the local CA and every node's certificate once.
func (c *Cluster) certificates() error {
	caCrt, caKey := c.path("pki", "ca.crt"), c.path("pki", "ca.key")
	ca, err := pki.LoadCA(caCrt, caKey)
	if err != nil {
		if ca, err = pki.NewCA("mailcluster dev CA"); err != nil {
			return err
		}
		if err := ca.SaveCA(caCrt, caKey); err != nil {
			return err
		}
	}
	names := []string{"mail"}
	for i := 1; i <= c.cfg.Backends; i++ {
		names = append(names, fmt.Sprintf("backend-%d", i))
	}
	for i := 1; i <= c.cfg.Frontends; i++ {
		names = append(names, fmt.Sprintf("frontend-%d", i))
	}
	for _, n := range names {
		if _, err := os.Stat(c.path("pki", n+".crt")); err == nil {
			continue
		}
		p, err := ca.Issue(n, "localhost", "127.0.0.1", "::1", n, "mail.example.test")
		if err != nil {
			return err
		}
		if _, _, err := p.WriteFiles(c.path("pki"), n); err != nil {
			return err
		}
	}
	return nil
}

func pgBin() (string, error) {
	if d := os.Getenv("MAILCLUSTER_PG_BIN"); d != "" {
		return d, nil
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(m) == 0 {
		return "", errors.New("PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql-15), or set MAILCLUSTER_PG_BIN")
	}
	return filepath.Dir(m[len(m)-1]), nil
}

// postgres starts the private PostgreSQL (initialising it the first time)
// on a unix socket in the state directory, with production durability.
func (c *Cluster) postgres(ctx context.Context) error {
	bin, err := pgBin()
	if err != nil {
		return err
	}
	data, sock := c.path("pg", "data"), c.path("pg", "sock")
	if err := os.MkdirAll(sock, 0o755); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return errors.New("running as root needs the postgres user (from the postgresql package)")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.pgCred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, d := range []string{c.dir, c.path("pg")} {
			os.Chmod(d, 0o755)
		}
		for _, d := range []string{c.path("pg"), sock} {
			if err := os.Chown(d, uid, gid); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
			"--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.pgCred}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("initdb: %v: %s", err, out)
		}
	}
	os.Remove(filepath.Join(data, "postmaster.pid")) // stale after a crash; postgres checks the PID itself otherwise
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", sock, "-c", "listen_addresses=", "-c", "max_connections=300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.pgCred}
	if err := c.spawn("postgres", cmd, syscall.SIGINT); err != nil {
		return err
	}
	psql := func(sql string) (string, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "psql"), "-X", "-Atq", "-h", sock, "-U", "postgres", "-d", "postgres", "-c", sql)
		if _, err := os.Stat(cmd.Path); err != nil {
			cmd.Path = "psql"
		}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if err := waitFor(ctx, 30*time.Second, func() error { _, err := psql("SELECT 1"); return err }); err != nil {
		return fmt.Errorf("did not start (see %s): %w", c.path("logs", "postgres.log"), err)
	}
	if out, _ := psql("SELECT 1 FROM pg_database WHERE datname='mailcluster'"); out != "1" {
		if out, err := psql("CREATE DATABASE mailcluster"); err != nil {
			return fmt.Errorf("create database: %v: %s", err, out)
		}
	}
	return nil
}

func (c *Cluster) dsn() string {
	return fmt.Sprintf("host=%s user=postgres dbname=mailcluster sslmode=disable", c.path("pg", "sock"))
}

// slapd starts the private directory, loading deploy/ldap/seed.ldif the
// first time.
func (c *Cluster) slapd(ctx context.Context) error {
	bin := "/usr/sbin/slapd"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("slapd"); err != nil {
			return errors.New("slapd not found: apt-get install --no-install-recommends slapd ldap-utils (scripts/tools.sh does)")
		}
	}
	conf := c.path("ldap", "slapd.conf")
	text := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/misc.schema
include %s
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload argon2
pidfile %s
password-hash {SSHA}
database config
database mdb
maxsize 1073741824
suffix "dc=example,dc=test"
rootdn "cn=admin,dc=example,dc=test"
rootpw %s
directory %s
index objectClass eq
index uid,mail,mailLocalAddress,member,entryUUID eq
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
`, filepath.Join(c.repo, "deploy", "ldap", "mailcluster.schema"), c.path("ldap", "slapd.pid"), ldapAdminPassword, c.path("ldap", "data"))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return err
	}
	if _, err := os.Stat(c.path("ldap", "data", "data.mdb")); err != nil {
		slapadd := filepath.Join(filepath.Dir(bin), "slapadd")
		if out, err := exec.CommandContext(ctx, slapadd, "-q", "-f", conf, "-l", filepath.Join(c.repo, "deploy", "ldap", "seed.ldif")).CombinedOutput(); err != nil {
			return fmt.Errorf("slapadd: %v: %s", err, out)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", c.cfg.ldapPort())
	cmd := exec.Command(bin, "-d", "0", "-f", conf, "-h", "ldap://"+addr+"/")
	if err := c.spawn("slapd", cmd, syscall.SIGTERM); err != nil {
		return err
	}
	return waitTCP(ctx, addr)
}

const (
	ldapAdminPassword  = "admin-secret"
	ldapReaderDN       = "cn=mailcluster,ou=services,dc=example,dc=test"
	ldapReaderPassword = "mailcluster-reader"
)

// LDAPEnv is the directory configuration every role of the local cluster
// uses (read-only service account for frontends; admin for provisioning).
func (c *Cluster) ldapEnv(admin bool) []string {
	env := []string{
		"MAILCLUSTER_LDAP_URLS=ldap://127.0.0.1:" + strconv.Itoa(c.cfg.ldapPort()) + "/",
		"MAILCLUSTER_LDAP_BASE_DN=dc=example,dc=test",
		"MAILCLUSTER_LOCAL_DOMAINS=example.test",
	}
	if admin {
		return append(env, "MAILCLUSTER_LDAP_BIND_DN=cn=admin,dc=example,dc=test", "MAILCLUSTER_LDAP_BIND_PASSWORD="+ldapAdminPassword)
	}
	return append(env, "MAILCLUSTER_LDAP_BIND_DN="+ldapReaderDN, "MAILCLUSTER_LDAP_BIND_PASSWORD="+ldapReaderPassword)
}

func (c *Cluster) backendAddr(i int) string { return fmt.Sprintf("127.0.0.1:%d", c.cfg.backendPort(i)) }

func (c *Cluster) backend(ctx context.Context, i int) error {
	name := fmt.Sprintf("backend-%d", i)
	cmd := exec.Command(c.self, "backend")
	cmd.Env = append(os.Environ(),
		"MAILCLUSTER_GRPC_LISTEN="+c.backendAddr(i),
		fmt.Sprintf("MAILCLUSTER_HTTP_LISTEN=127.0.0.1:%d", c.cfg.BasePort+950+i),
		"MAILCLUSTER_GRPC_TLS_CERT="+c.path("pki", name+".crt"),
		"MAILCLUSTER_GRPC_TLS_KEY="+c.path("pki", name+".key"),
		"MAILCLUSTER_GRPC_CLIENT_CA="+c.path("pki", "ca.crt"),
		"MAILCLUSTER_POSTGRES_DSN="+c.dsn(),
		"MAILCLUSTER_OUTBOUND_HELO=mail.example.test",
	)
	if c.cfg.BlobStore == "s3" {
		// The S3 settings come from the environment, inherited.
		cmd.Env = append(cmd.Env, "MAILCLUSTER_BLOB_DRIVER=s3")
	} else {
		cmd.Env = append(cmd.Env, "MAILCLUSTER_BLOB_DRIVER=fs", "MAILCLUSTER_BLOB_FS_ROOT="+c.path("blobs"))
	}
	if err := c.spawn(name, cmd, syscall.SIGTERM); err != nil {
		return err
	}
	return waitTCP(ctx, c.backendAddr(i))
}

// frontendEnv is set by the frontend role's wiring (frontend.go).
var frontendEnv func(c *Cluster, i int) []string

func (c *Cluster) frontend(ctx context.Context, i int) error {
	if frontendEnv == nil {
		return nil // the frontend role is not built into this binary yet
	}
	name := fmt.Sprintf("frontend-%d", i)
	cmd := exec.Command(c.self, "frontend")
	cmd.Env = append(append(os.Environ(), c.ldapEnv(false)...), frontendEnv(c, i)...)
	if err := c.spawn(name, cmd, syscall.SIGTERM); err != nil {
		return err
	}
	return waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", c.cfg.frontendPort(i, 25)))
}

// seedUsers is how many userN accounts deploy/ldap/seed.ldif has.
const seedUsers = 10

// provision adds user11..userN through the admin command (the seed has the
// first ten), spread over the backends, for load tests. Accounts that exist
// from an earlier run are left as they are.
func (c *Cluster) provision(ctx context.Context) error {
	if c.cfg.Users <= seedUsers {
		return nil
	}
	var backends []string
	for i := 1; i <= c.cfg.Backends; i++ {
		backends = append(backends, fmt.Sprintf("backend-%d", i))
	}
	cmd := exec.CommandContext(ctx, c.self, "admin", "user", "bulk-add", "--generate", strconv.Itoa(c.cfg.Users-seedUsers),
		"--start", strconv.Itoa(seedUsers+1), "--domain", "example.test", "--password", "secret",
		"--backends", strings.Join(backends, ","))
	cmd.Env = append(os.Environ(), c.ldapEnv(true)...)
	out, err := cmd.CombinedOutput()
	if err != nil && !strings.Contains(string(out), "already") {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func (c *Cluster) summary() {
	w := c.out
	fmt.Fprintf(w, "mailcluster dev: running; state in %s, logs in %s, PIDs in %s\n", c.dir, c.path("logs"), c.path("run"))
	fmt.Fprintf(w, "  PostgreSQL  %s\n", c.dsn())
	fmt.Fprintf(w, "  LDAP        ldap://127.0.0.1:%d/  (admin: cn=admin,dc=example,dc=test / %s)\n", c.cfg.ldapPort(), ldapAdminPassword)
	for i := 1; i <= c.cfg.Backends; i++ {
		fmt.Fprintf(w, "  backend-%d   gRPC %s (mTLS, CA %s), metrics http://127.0.0.1:%d/metrics\n", i, c.backendAddr(i), c.path("pki", "ca.crt"), c.cfg.BasePort+950+i)
	}
	if frontendEnv != nil {
		for i := 1; i <= c.cfg.Frontends; i++ {
			p := func(n int) int { return c.cfg.frontendPort(i, n) }
			fmt.Fprintf(w, "  frontend-%d  SMTP %d  submission %d  submissions %d  IMAP %d  IMAPS %d  POP3 %d  POP3S %d\n",
				i, p(25), p(87), p(65), p(43), p(93), p(10), p(95))
		}
	}
	fmt.Fprintf(w, "  demo logins user1@example.test … user10@example.test, password secret (TLS: trust %s)\n", c.path("pki", "ca.crt"))
	fmt.Fprintln(w, "  Ctrl-C stops everything; run again to continue with the same mail.")
}

// spawn starts a child process with its output in logs/<name>.log. The
// child is killed if this process dies (Pdeathsig).
func (c *Cluster) spawn(name string, cmd *exec.Cmd, stop syscall.Signal) error {
	logf, err := os.OpenFile(c.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	// The PID file lets operators and tests stop one node (kill $(cat …)).
	pidFile := c.path("run", name+".pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		c.log.Warn("writing PID file", "err", err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), stop: stop}
	go func() {
		err := cmd.Wait()
		logf.Close()
		os.Remove(pidFile)
		close(p.done)
		c.log.Info("process exited", "name", name, "pid", cmd.Process.Pid, "err", err)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.log.Debug("started", "name", name, "pid", cmd.Process.Pid)
	return nil
}

// stopAll stops every process, newest first, each with its stop signal and a
// grace period.
func (c *Cluster) stopAll() {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		select {
		case <-p.done:
			continue
		default:
		}
		p.cmd.Process.Signal(p.stop)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
}

func waitFor(ctx context.Context, d time.Duration, fn func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitTCP(ctx context.Context, addr string) error {
	return waitFor(ctx, 30*time.Second, func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

func init() {
	frontendEnv = func(c *Cluster, i int) []string {
		addr := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", c.cfg.frontendPort(i, p)) }
		var backends []string
		for b := 1; b <= c.cfg.Backends; b++ {
			backends = append(backends, fmt.Sprintf("backend-%d=%s", b, c.backendAddr(b)))
		}
		name := fmt.Sprintf("frontend-%d", i)
		return []string{
			"MAILCLUSTER_HOSTNAME=mail.example.test",
			// Load tests open many connections from 127.0.0.1.
			"MAILCLUSTER_MAX_CONNECTIONS_PER_IP=2000",
			"MAILCLUSTER_SMTP_LISTEN=" + addr(25),
			"MAILCLUSTER_SUBMISSION_LISTEN=" + addr(87),
			"MAILCLUSTER_SUBMISSIONS_LISTEN=" + addr(65),
			"MAILCLUSTER_IMAP_LISTEN=" + addr(43),
			"MAILCLUSTER_IMAPS_LISTEN=" + addr(93),
			"MAILCLUSTER_POP3_LISTEN=" + addr(10),
			"MAILCLUSTER_POP3S_LISTEN=" + addr(95),
			fmt.Sprintf("MAILCLUSTER_HTTP_LISTEN=127.0.0.1:%d", c.cfg.frontendPort(i, 80)),
			"MAILCLUSTER_TLS_CERT=" + c.path("pki", "mail.crt"),
			"MAILCLUSTER_TLS_KEY=" + c.path("pki", "mail.key"),
			"MAILCLUSTER_BACKENDS=" + strings.Join(backends, ","),
			"MAILCLUSTER_BACKEND_CA_FILE=" + c.path("pki", "ca.crt"),
			"MAILCLUSTER_BACKEND_CERT=" + c.path("pki", name+".crt"),
			"MAILCLUSTER_BACKEND_KEY=" + c.path("pki", name+".key"),
		}
	}
}
