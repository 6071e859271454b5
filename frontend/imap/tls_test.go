package imap

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"mailcluster/internal/pki"
)

// Without TLS, LOGIN is disabled (LOGINDISABLED, NO [PRIVACYREQUIRED]);
// after STARTTLS, or on an implicit-TLS listener (993), it works.
func TestTLSAndLoginDisabled(t *testing.T) {
	st := newStack(t, 1)
	st.user("hank")
	ca, err := pki.NewCA("imap test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue("imap", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pair.TLS()
	if err != nil {
		t.Fatal(err)
	}
	srvTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	cfg := DefaultConfig()
	srv, err := New(cfg, Deps{Auth: st.dir, Router: &testRouter{clients: st.clients, down: map[int]bool{}}, TLS: srvTLS}, st.log)
	if err != nil {
		t.Fatal(err)
	}
	plain := serveOn(t, srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tls.NewListener(l, srvTLS))
	implicit := l.Addr().String()

	r := dialRaw(t, plain)
	r.send("a CAPABILITY\r\n")
	caps := r.expect("* CAPABILITY")
	if !strings.Contains(caps, "LOGINDISABLED") || !strings.Contains(caps, "STARTTLS") || strings.Contains(caps, "AUTH=PLAIN") {
		t.Fatalf("plaintext capabilities: %q", caps)
	}
	r.expect("a OK")
	r.send("b LOGIN hank secret\r\n")
	if l := r.expect("b "); !strings.HasPrefix(l, "b NO [PRIVACYREQUIRED]") {
		t.Fatalf("LOGIN without TLS: %q", l)
	}
	r.send("c AUTHENTICATE PLAIN AGhhbmsAc2VjcmV0\r\n")
	if l := r.expect("c "); !strings.HasPrefix(l, "c NO [PRIVACYREQUIRED]") {
		t.Fatalf("AUTHENTICATE without TLS: %q", l)
	}

	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
	c, err := imapclient.DialStartTLS(plain, &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("hank", "secret").Wait(); err != nil {
		t.Fatalf("LOGIN after STARTTLS: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	c2, err := imapclient.DialTLS(implicit, &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if !c2.Caps().Has(imap.AuthCap("PLAIN")) || c2.Caps().Has(imap.CapLoginDisabled) {
		t.Fatalf("implicit TLS capabilities: %v", c2.Caps())
	}
	// SASL PLAIN with an initial response (SASL-IR).
	if err := c2.Authenticate(plainClient("hank", "secret")); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN: %v", err)
	}
	if _, err := c2.List("", "*", nil).Collect(); err != nil {
		t.Fatal(err)
	}
	caps2, err := c2.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []imap.Cap{imap.CapIMAP4rev2, imap.CapIdle, imap.CapMove, imap.CapUIDPlus, imap.CapNamespace, imap.CapSpecialUse,
		imap.CapListStatus, imap.CapStatusSize, imap.CapUnselect, imap.CapChildren, imap.CapESearch} {
		if !caps2.Has(want) {
			t.Errorf("capability %s missing", want)
		}
	}

	// Close says BYE [UNAVAILABLE] to connected clients.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c2.Noop().Wait(); err == nil {
		t.Fatal("NOOP after Close succeeded")
	}
}

func plainClient(user, pass string) sasl.Client { return sasl.NewPlainClient("", user, pass) }

// ServeAuth makes the insecure-authentication choice per listener: a local
// development listener next to a public one.
func TestServeAuthPerListener(t *testing.T) {
	st := newStack(t, 1)
	st.user("yara")
	srv, err := New(DefaultConfig(), Deps{Auth: st.dir, Router: &testRouter{clients: st.clients, down: map[int]bool{}}}, st.log)
	if err != nil {
		t.Fatal(err)
	}
	public := serveOn(t, srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeAuth(l, true)
	dev := l.Addr().String()

	r := dialRaw(t, public)
	r.send("a LOGIN yara secret\r\n")
	if l := r.expect("a "); !strings.HasPrefix(l, "a NO [PRIVACYREQUIRED]") {
		t.Fatalf("public listener: %q", l)
	}
	r = dialRaw(t, dev)
	r.send("a CAPABILITY\r\nb LOGIN yara secret\r\n")
	if caps := r.expect("* CAPABILITY"); strings.Contains(caps, "LOGINDISABLED") {
		t.Fatalf("development listener: %q", caps)
	}
	r.expect("a OK")
	r.expect("b OK")
}
