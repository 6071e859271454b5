package directory_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"mailcluster/directory"
)

var (
	loopback = netip.MustParseAddr("127.0.0.1")
	ip1      = netip.MustParseAddr("192.0.2.1")
	ip2      = netip.MustParseAddr("198.51.100.7")
)

func TestAuthenticate(t *testing.T) {
	f := newFixture(t)
	f.user("alice", "alice@example.test", "mailLocalAddress: a.smith@example.test", "mailHost: backend-1")
	f.user("bob", "bob@example.test", "mailclusterEnabled: FALSE")
	cfg := f.config()
	cfg.AuthDelayBase = 0 // delays are tested separately
	d := newDir(t, cfg)
	ctx := context.Background()

	for _, login := range []string{"alice", "alice@example.test", "Alice@EXAMPLE.test", "a.smith@example.test"} {
		acc, err := d.Authenticate(ctx, login, "secret", loopback)
		if err != nil || acc.Address != "alice@example.test" || acc.Backend != "backend-1" || acc.ID == "" {
			t.Errorf("login %q: %+v, %v", login, acc, err)
		}
	}
	bad := []struct{ login, password string }{
		{"alice", "wrong"},
		{"alice", "Secret"},
		{"alice", ""}, // an empty password would be an anonymous bind
		{"alice", "secret\x00"},
		{"alice\x00", "secret"},
		{"nobody", "secret"},
		{"", "secret"},
		{"bob", "wrong"}, // disabled, but the password is wrong: no hint
	}
	for _, c := range bad {
		if _, err := d.Authenticate(ctx, c.login, c.password, loopback); !errors.Is(err, directory.ErrBadCredentials) {
			t.Errorf("login %q password %q: %v, want ErrBadCredentials", c.login, c.password, err)
		}
	}
	if _, err := d.Authenticate(ctx, "bob", "secret", loopback); !errors.Is(err, directory.ErrDisabled) {
		t.Errorf("disabled bob: %v, want ErrDisabled", err)
	}
}

// TestAuthenticateInjection uses a tree with a single account, so that any
// filter metacharacter that reached LDAP unescaped (matching "any uid")
// would find that account and the right password would log in.
func TestAuthenticateInjection(t *testing.T) {
	f := newFixture(t)
	f.user("solo", "solo@example.test")
	cfg := f.config()
	cfg.AuthDelayBase = 0
	d := newDir(t, cfg)
	ctx := context.Background()
	if _, err := d.Authenticate(ctx, "solo", "secret", loopback); err != nil {
		t.Fatalf("the account itself: %v", err)
	}
	for _, login := range []string{"*", "s*", "*)(uid=*))(|(uid=*", "solo)(uid=*", "*)(|(objectClass=*)",
		"solo\x00", "\x00", "so\\2alo", "(uid=solo)", "solo*@example.test", "*@example.test"} {
		if acc, err := d.Authenticate(ctx, login, "secret", loopback); !errors.Is(err, directory.ErrBadCredentials) {
			t.Errorf("login %q: %+v %v, want ErrBadCredentials", login, acc, err)
		}
	}
}

func TestAuthenticateDelays(t *testing.T) {
	f := newFixture(t)
	f.user("alice", "alice@example.test")
	cfg := f.config()
	cfg.AuthDelayBase = time.Second
	cfg.AuthDelayMax = 4 * time.Second
	cfg.AuthFailFree = 3
	cfg.AuthFailTTL = 10 * time.Minute
	clk, sl := newClock(), &sleeper{}
	d := newDir(t, cfg, directory.WithClock(clk.Now), directory.WithSleep(sl.Sleep))
	ctx := context.Background()
	try := func(login, pw string, ip netip.Addr) error {
		_, err := d.Authenticate(ctx, login, pw, ip)
		return err
	}

	if err := try("alice", "secret", ip1); err != nil {
		t.Fatal(err)
	}
	if got := sl.take(); len(got) != 0 {
		t.Fatalf("first login delayed %v", got)
	}
	// Failures for alice from ip1 delay alice from ip1: 1s, 2s, 4s, 4s.
	for i := 0; i < 5; i++ {
		if err := try("alice", "wrong", ip1); !errors.Is(err, directory.ErrBadCredentials) {
			t.Fatal(err)
		}
	}
	if got, want := sl.take(), []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}; !slices.Equal(got, want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	// No lockout: alice from another address is not delayed and gets in.
	if err := try("alice", "secret", ip2); err != nil {
		t.Fatalf("alice from ip2: %v", err)
	}
	if got := sl.take(); len(got) != 0 {
		t.Fatalf("alice from ip2 delayed %v", got)
	}
	// Another spelling of the login is the same login.
	if err := try("ALICE", "wrong", ip1); !errors.Is(err, directory.ErrBadCredentials) {
		t.Fatal(err)
	}
	if got := sl.take(); !slices.Equal(got, []time.Duration{4 * time.Second}) {
		t.Fatalf("ALICE from ip1: delays %v, want [4s]", got)
	}
	// ip1 has 6 failures, 3 over its free 3: any login from it waits 4s.
	if err := try("other", "x", ip1); !errors.Is(err, directory.ErrBadCredentials) {
		t.Fatal(err)
	}
	if got := sl.take(); !slices.Equal(got, []time.Duration{4 * time.Second}) {
		t.Fatalf("other login from ip1: delays %v, want [4s]", got)
	}
	// From a fresh address, 2 failures of other logins stay free.
	ip3 := netip.MustParseAddr("2001:db8::1")
	try("x1", "x", ip3)
	try("x2", "x", netip.MustParseAddr("2001:db8::2")) // same /64
	if err := try("alice", "secret", ip3); err != nil {
		t.Fatal(err)
	}
	if got := sl.take(); len(got) != 0 {
		t.Fatalf("within auth-fail-free: delays %v", got)
	}
	try("x3", "x", ip3)
	try("x4", "x", ip3) // the /64 now has 4 failures, one over the free 3
	if got := sl.take(); len(got) != 0 {
		t.Fatalf("attempts up to auth-fail-free: delays %v", got)
	}
	try("x5", "x", ip3)
	if got := sl.take(); !slices.Equal(got, []time.Duration{time.Second}) {
		t.Fatalf("past auth-fail-free: delays %v, want [1s]", got)
	}
	// The right password from ip1 still works (after the delay) and clears
	// alice's record for ip1.
	if err := try("alice", "secret", ip1); err != nil {
		t.Fatalf("alice from ip1 with the right password: %v", err)
	}
	sl.take()
	// Failures are forgotten after auth-fail-ttl.
	clk.Advance(11 * time.Minute)
	if err := try("alice", "secret", ip1); err != nil {
		t.Fatal(err)
	}
	if got := sl.take(); len(got) != 0 {
		t.Fatalf("after the failure window: delays %v", got)
	}
	// A cancelled context ends the wait.
	try("alice", "wrong", ip1)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := d.Authenticate(cctx, "alice", "secret", ip1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while delayed: %v", err)
	}
}
