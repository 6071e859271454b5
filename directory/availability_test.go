package directory_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"mailcluster/directory"
	"mailcluster/internal/testenv"
)

// TestCacheAndOutage stops slapd mid-test: recently seen addresses are still
// served, unseen ones fail temporarily (never "unknown"), and answers come
// back when slapd does.
func TestCacheAndOutage(t *testing.T) {
	s := testenv.NewSlapd(t, testenv.SlapdOptions{})
	f := &fixture{t: t, s: s, tree: s.NewTree(t)}
	f.user("alice", "alice@example.test")
	f.user("bob", "bob@example.test")
	f.list("team", "team@example.test", f.userDN("alice"), f.userDN("bob"))
	cfg := f.config()
	cfg.CacheTTL = time.Minute
	cfg.NegativeCacheTTL = 10 * time.Second
	cfg.StaleTTL = time.Hour
	cfg.AuthDelayBase = 0
	clk := newClock()
	d := newDir(t, cfg, directory.WithClock(clk.Now))
	ctx := context.Background()

	resolve(t, d, "alice@example.test")
	resolve(t, d, "team@example.test")
	if r := resolve(t, d, "carol@example.test"); r.Kind != directory.Unknown {
		t.Fatalf("carol before she exists: %v", r.Kind)
	}
	// The negative answer is cached: carol, added now, stays unknown until
	// the negative TTL passes.
	f.user("carol", "carol@example.test")
	if r := resolve(t, d, "carol@example.test"); r.Kind != directory.Unknown {
		t.Fatalf("carol within the negative TTL: %v, want the cached unknown", r.Kind)
	}
	clk.Advance(11 * time.Second)
	if r := resolve(t, d, "carol@example.test"); r.Kind != directory.Account {
		t.Fatalf("carol after the negative TTL: %v", r.Kind)
	}
	if r := resolve(t, d, "nobody@example.test"); r.Kind != directory.Unknown {
		t.Fatalf("nobody: %v", r.Kind)
	}

	limCfg := cfg
	limCfg.ListMaxMembers = 1
	lim := newDir(t, limCfg, directory.WithClock(clk.Now))
	if _, err := lim.Resolve(ctx, "team@example.test"); !errors.Is(err, directory.ErrListLimit) {
		t.Fatalf("team over the limit: %v", err)
	}

	s.Stop()
	// An oversized list is remembered as such (not asked again).
	if _, err := lim.Resolve(ctx, "team@example.test"); !errors.Is(err, directory.ErrListLimit) {
		t.Fatalf("team over the limit, in an outage within the negative TTL: %v, want the cached ErrListLimit", err)
	}
	// Within the TTL: from cache.
	if r := resolve(t, d, "alice@example.test"); r.Kind != directory.Account {
		t.Fatalf("alice in an outage, fresh: %v", r.Kind)
	}
	if r := resolve(t, d, "nobody@example.test"); r.Kind != directory.Unknown {
		t.Fatalf("nobody in an outage within the negative TTL: %v", r.Kind)
	}
	// Past the TTL, within the staleness: still served.
	clk.Advance(5 * time.Minute)
	if r := resolve(t, d, "alice@example.test"); r.Kind != directory.Account {
		t.Fatalf("alice in an outage, stale: %v", r.Kind)
	}
	if r := resolve(t, d, "team@example.test"); r.Kind != directory.List || len(r.Members) != 2 {
		t.Fatalf("team in an outage, stale: %+v", r)
	}
	// Never seen, or negative answer expired: temporary, never unknown.
	for _, addr := range []string{"bob@example.test", "nobody@example.test", "new@example.test"} {
		if r, err := d.Resolve(ctx, addr); !errors.Is(err, directory.ErrTemporary) {
			t.Fatalf("%s in an outage: %v %v, want ErrTemporary", addr, r.Kind, err)
		}
	}
	if _, err := d.Authenticate(ctx, "alice", "secret", loopback); !errors.Is(err, directory.ErrTemporary) {
		t.Fatalf("login in an outage: %v, want ErrTemporary", err)
	}
	if err := d.Ping(ctx); !errors.Is(err, directory.ErrTemporary) {
		t.Fatalf("Ping in an outage: %v", err)
	}
	// Past the staleness: temporary too.
	clk.Advance(time.Hour)
	if _, err := d.Resolve(ctx, "alice@example.test"); !errors.Is(err, directory.ErrTemporary) {
		t.Fatalf("alice past the staleness: %v, want ErrTemporary", err)
	}

	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute) // past the servers' down mark
	if r := resolve(t, d, "bob@example.test"); r.Kind != directory.Account {
		t.Fatalf("bob after the outage: %v", r.Kind)
	}
	if _, err := d.Authenticate(ctx, "alice", "secret", loopback); err != nil {
		t.Fatalf("login after the outage: %v", err)
	}
}

// TestFailover runs two independent slapd servers holding the same accounts
// (each with its own mailHost, to tell which answered) and stops them in
// turn.
func TestFailover(t *testing.T) {
	a := testenv.NewSlapd(t, testenv.SlapdOptions{})
	b := testenv.NewSlapd(t, testenv.SlapdOptions{})
	people := "ou=people," + testenv.SlapdSuffix
	for _, s := range []*testenv.Slapd{a, b} {
		host := "from-a"
		if s == b {
			host = "from-b"
		}
		s.AddLDIF(t, "dn: "+people+"\nobjectClass: organizationalUnit\nou: people\n")
		for _, u := range []string{"u1", "u2", "u3", "u4"} {
			s.AddLDIF(t, userLDIF(people, u, u+"@example.test", "mailHost: "+host))
		}
	}
	cfg := configFor(a.URL, testenv.SlapdSuffix)
	cfg.URLs = []string{a.URL, b.URL}
	cfg.AuthDelayBase = 0
	clk := newClock()
	d := newDir(t, cfg, directory.WithClock(clk.Now))
	ctx := context.Background()

	if r := resolve(t, d, "u1@example.test"); r.Account.Backend != "from-a" {
		t.Fatalf("u1 answered by %q, want the first server", r.Account.Backend)
	}
	a.Stop()
	if r := resolve(t, d, "u2@example.test"); r.Account.Backend != "from-b" {
		t.Fatalf("u2 with a down: answered by %q, want the second server", r.Account.Backend)
	}
	if _, err := d.Authenticate(ctx, "u2", "secret", loopback); err != nil {
		t.Fatalf("login with a down: %v", err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	b.Stop()
	if r := resolve(t, d, "u3@example.test"); r.Account.Backend != "from-a" {
		t.Fatalf("u3 with b down: answered by %q", r.Account.Backend)
	}
	a.Stop()
	if _, err := d.Resolve(ctx, "u4@example.test"); !errors.Is(err, directory.ErrTemporary) {
		t.Fatalf("both down: %v, want ErrTemporary", err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if r := resolve(t, d, "u4@example.test"); r.Account.Backend != "from-b" {
		t.Fatalf("u4 with b back: answered by %q", r.Account.Backend)
	}
}

func TestTLS(t *testing.T) {
	s := testenv.NewSlapd(t, testenv.SlapdOptions{TLS: true})
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		url      string
		startTLS bool
		ca       string
		ok       bool
	}{
		{"ldaps with CA", s.LDAPS, false, s.CAFile, true},
		{"starttls with CA", s.URL, true, s.CAFile, true},
		{"ldaps without CA", s.LDAPS, false, "", false},
		{"starttls without CA", s.URL, true, "", false},
	} {
		cfg := configFor(c.url, testenv.SlapdSuffix)
		cfg.StartTLS, cfg.CAFile = c.startTLS, c.ca
		d := newDir(t, cfg)
		err := d.Ping(ctx)
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok && !errors.Is(err, directory.ErrTemporary) {
			t.Errorf("%s: %v, want a verification failure (ErrTemporary)", c.name, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := directory.DefaultConfig()
	cfg.BaseDN = "dc=example,dc=test"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.AttrID != "entryUUID" || cfg.AttrBackend != "mailHost" || cfg.ListObjectClass != "groupOfNames" {
		t.Fatalf("openldap preset not applied: %+v", cfg)
	}
	ad := directory.DefaultConfig()
	ad.BaseDN, ad.Preset, ad.AttrBackend = "dc=corp,dc=example", directory.PresetAD, "msExchHomeServerName"
	if err := ad.Validate(); err != nil {
		t.Fatal(err)
	}
	if ad.AttrID != "objectGUID" || ad.EnabledMode != directory.EnabledADUAC || ad.AttrBackend != "msExchHomeServerName" {
		t.Fatalf("ad preset: %+v", ad)
	}
	for name, mod := range map[string]func(*directory.Config){
		"no base":         func(c *directory.Config) { c.BaseDN = "" },
		"bad url":         func(c *directory.Config) { c.URLs = []string{"http://x"} },
		"no urls":         func(c *directory.Config) { c.URLs = nil },
		"bad preset":      func(c *directory.Config) { c.Preset = "novell" },
		"filter no %s":    func(c *directory.Config) { c.LoginFilter = "(uid=x)" },
		"filter unbal":    func(c *directory.Config) { c.AddressFilter = "(mail=%s" },
		"dn without pw":   func(c *directory.Config) { c.BindDN = "cn=x" },
		"starttls+ldaps":  func(c *directory.Config) { c.URLs, c.StartTLS = []string{"ldaps://h/"}, true },
		"zero pool":       func(c *directory.Config) { c.PoolSize = 0 },
		"zero ttl":        func(c *directory.Config) { c.CacheTTL = 0 },
		"delay max < min": func(c *directory.Config) { c.AuthDelayMax = time.Millisecond },
		"missing ca":      func(c *directory.Config) { c.CAFile = "/nonexistent/ca.pem" },
		"bad domain":      func(c *directory.Config) { c.LocalDomains = []string{"a@b"} },
		"bad separator":   func(c *directory.Config) { c.SubaddressSeparator = "@" },
	} {
		c := directory.DefaultConfig()
		c.BaseDN = "dc=example,dc=test"
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}

// hungServer accepts TCP connections and never answers: an LDAP server
// that hangs. It returns its ldap:// URL.
func hungServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "ldap://" + l.Addr().String() + "/"
}

// TestHungServer: operations on a server that accepts but never answers
// time out as temporary errors, and the next URL takes over.
func TestHungServer(t *testing.T) {
	f := newFixture(t)
	f.user("alice", "alice@example.test")
	hung := hungServer(t)
	ctx := context.Background()

	cfg := f.config()
	cfg.URLs = []string{hung}
	cfg.Timeout = time.Second // long enough for the real slapd under load
	d := newDir(t, cfg)
	if _, err := d.Resolve(ctx, "alice@example.test"); !errors.Is(err, directory.ErrTemporary) {
		t.Fatalf("hung server, bound lookups: %v, want ErrTemporary", err)
	}
	cfg.BindDN, cfg.BindPassword = "", "" // anonymous: the first request is the search itself
	anon := newDir(t, cfg)
	if _, err := anon.Resolve(ctx, "alice@example.test"); !errors.Is(err, directory.ErrTemporary) {
		t.Fatalf("hung server, anonymous lookups: %v, want ErrTemporary", err)
	}

	cfg = f.config()
	cfg.URLs = []string{hung, f.s.URL}
	cfg.Timeout = time.Second // long enough for the real slapd under load
	cfg.AuthDelayBase = 0
	both := newDir(t, cfg)
	if r := resolve(t, both, "alice@example.test"); r.Kind != directory.Account {
		t.Fatalf("hung first server, real second: %v", r.Kind)
	}
	if _, err := both.Authenticate(ctx, "alice", "secret", loopback); err != nil {
		t.Fatalf("login past a hung server: %v", err)
	}
}
