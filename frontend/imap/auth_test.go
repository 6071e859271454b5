package imap

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"mailcluster/directory"
)

// fakeAuth answers every login with err.
type fakeAuth struct{ err error }

func (f fakeAuth) Authenticate(context.Context, string, string, netip.Addr) (directory.AccountInfo, error) {
	return directory.AccountInfo{}, f.err
}

// Directory trouble is temporary (NO [UNAVAILABLE]) and says nothing
// internal; a disabled account is an ordinary authentication failure.
func TestLoginDirectoryErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{directory.ErrTemporary, "a NO [UNAVAILABLE]"},
		{fmt.Errorf("ldap: dial tcp 10.0.0.1:389: %w", directory.ErrTemporary), "a NO [UNAVAILABLE]"},
		{directory.ErrDisabled, "a NO [AUTHENTICATIONFAILED]"},
		{directory.ErrBadCredentials, "a NO [AUTHENTICATIONFAILED]"},
		{fmt.Errorf("something odd at 10.0.0.1"), "a NO [UNAVAILABLE]"},
	} {
		cfg := DefaultConfig()
		cfg.InsecureAuth = true
		srv, err := New(cfg, Deps{Auth: fakeAuth{tc.err}, Router: &noRouter{}}, testLog())
		if err != nil {
			t.Fatal(err)
		}
		r := dialRaw(t, serveOn(t, srv))
		r.send("a LOGIN user secret\r\n")
		l := r.expect("a ")
		if !strings.HasPrefix(l, tc.want) || strings.Contains(l, "10.0.0.1") || strings.Contains(l, "ldap") {
			t.Errorf("%v: %q, want %q", tc.err, l, tc.want)
		}
	}
}
