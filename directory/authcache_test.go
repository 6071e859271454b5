package directory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"mailcluster/directory"
	"mailcluster/internal/testenv"
)

// TestAuthCache: a login and password LDAP accepted are accepted again
// without LDAP (here: while slapd is stopped) for auth-cache-ttl, in any
// case of the login; another password is not; a failed login drops the
// entry; with auth-cache-ttl 0 nothing is remembered.
func TestAuthCache(t *testing.T) {
	s := testenv.NewSlapd(t, testenv.SlapdOptions{})
	f := &fixture{t: t, s: s, tree: s.NewTree(t)}
	f.user("alice", "alice@example.test")
	f.user("bob", "bob@example.test", "mailclusterEnabled: FALSE")
	cfg := f.config()
	cfg.AuthDelayBase = 0
	cfg.AuthCacheTTL = time.Minute
	clk := newClock()
	d := newDir(t, cfg, directory.WithClock(clk.Now))
	off := cfg
	off.AuthCacheTTL = 0
	dOff := newDir(t, off, directory.WithClock(clk.Now))
	ctx := context.Background()
	login := func(d *directory.Directory, user, pw string, want error) {
		t.Helper()
		acc, err := d.Authenticate(ctx, user, pw, loopback)
		if !errors.Is(err, want) || (want == nil && acc.Address != "alice@example.test") {
			t.Fatalf("%s/%s: %+v %v, want %v", user, pw, acc, err, want)
		}
	}

	login(d, "alice", "secret", nil)
	login(dOff, "alice", "secret", nil)
	login(d, "bob", "secret", directory.ErrDisabled)
	s.Stop()
	login(d, "alice", "secret", nil)
	login(d, "ALICE", "secret", nil)
	login(d, "alice", "other", directory.ErrTemporary)
	login(d, "bob", "secret", directory.ErrTemporary) // disabled: never remembered
	login(dOff, "alice", "secret", directory.ErrTemporary)
	clk.Advance(61 * time.Second)
	login(d, "alice", "secret", directory.ErrTemporary)

	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute) // past the server's down mark
	login(d, "alice", "secret", nil)
	login(d, "alice", "wrong", directory.ErrBadCredentials)
	s.Stop()
	login(d, "alice", "secret", directory.ErrTemporary) // dropped by the failure
}
