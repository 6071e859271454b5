package directory_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"mailcluster/directory"
	"mailcluster/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is one test's subtree of a real slapd.
type fixture struct {
	t    testing.TB
	s    *testenv.Slapd
	tree testenv.Tree
}

func newFixture(t testing.TB) *fixture {
	s := testenv.StartSlapd(t)
	return &fixture{t: t, s: s, tree: s.NewTree(t)}
}

// userDN returns the DN of account uid in the fixture's tree.
func (f *fixture) userDN(uid string) string { return "uid=" + uid + "," + f.tree.PeopleDN }

// listDN returns the DN of list cn in the fixture's tree.
func (f *fixture) listDN(cn string) string { return "cn=" + cn + "," + f.tree.ListsDN }

// user adds an account with password "secret"; extra are further LDIF lines
// ("mailLocalAddress: a@b").
func (f *fixture) user(uid, mail string, extra ...string) {
	f.t.Helper()
	f.s.AddLDIF(f.t, userLDIF(f.tree.PeopleDN, uid, mail, extra...))
}

func userLDIF(parent, uid, mail string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: uid=%s,%s\nobjectClass: inetOrgPerson\nobjectClass: inetLocalMailRecipient\n"+
		"objectClass: mailclusterAccount\nuid: %s\ncn: %s\nsn: %s\nmail: %s\nuserPassword: secret\n",
		uid, parent, uid, uid, uid, mail)
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// list adds a distribution list whose members are DNs.
func (f *fixture) list(cn, mail string, members ...string) {
	f.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\nobjectClass: groupOfNames\nobjectClass: inetLocalMailRecipient\nobjectClass: mailclusterList\ncn: %s\nmail: %s\n",
		f.listDN(cn), cn, mail)
	for _, m := range members {
		b.WriteString("member: " + m + "\n")
	}
	f.s.AddLDIF(f.t, b.String())
}

// config returns a Directory configuration for the fixture's tree.
func (f *fixture) config() directory.Config {
	return configFor(f.s.URL, f.tree.BaseDN)
}

func configFor(url, base string) directory.Config {
	cfg := directory.DefaultConfig()
	cfg.URLs = []string{url}
	cfg.BindDN = testenv.SlapdAdminDN
	cfg.BindPassword = testenv.SlapdAdminPassword
	cfg.BaseDN = base
	cfg.DialTimeout = 2 * time.Second
	cfg.Timeout = 5 * time.Second
	return cfg
}

func newDir(t testing.TB, cfg directory.Config, opts ...directory.Option) *directory.Directory {
	t.Helper()
	d, err := directory.New(cfg, slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// clock is a settable clock for cache and failure windows.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// sleeper records the delays Authenticate asks for instead of waiting.
type sleeper struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.delays = append(s.delays, d)
	s.mu.Unlock()
	return ctx.Err()
}

// take returns the delays recorded since the last call.
func (s *sleeper) take() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.delays
	s.delays = nil
	return d
}

func resolve(t testing.TB, d *directory.Directory, addr string) directory.Result {
	t.Helper()
	r, err := d.Resolve(context.Background(), addr)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", addr, err)
	}
	return r
}
