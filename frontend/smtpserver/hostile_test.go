package smtpserver_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailcluster/frontend"
	"mailcluster/internal/testenv"
)

// Over-long lines: a command line longer than its limit gets 500 5.5.2 and
// the session goes on (TestCommandLineLimit); a text line longer than 1000
// bytes (998 + CRLF) or a header line over 998 in BDAT refuses the
// message; nothing is stored.
func TestLongLines(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("NOOP "+strings.Repeat("x", 20000), "500 5.5.2 ")
	cn.cmd("NOOP", "250 ")
	// A command over 512 bytes with a path over 256 (RFC 5321 4.5.3.1).
	cn = c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<"+strings.Repeat("s", 600)+"@remote.test>", "501 5.5.2 ")
	// go-smtp answers a later EHLO itself; the session refuses MAIL until
	// the client introduces itself properly.
	cn.cmd("EHLO "+strings.Repeat("h", 300), "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "501 5.5.2 ")
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.expectData(message("long", strings.Repeat("y", 999)+"\r\n"), "500 5.5.2 ")
	cn = c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	hdr := "X-Long: " + strings.Repeat("h", 991) + "\r\n" + message("hdr", "x\r\n")
	// In separate packets, as a client that waits would send them.
	cn.sendSlow("BDAT "+itoa(len(hdr))+" LAST\r\n", hdr)
	cn.expect("554 5.6.0 Header line")
	cn.cmd("NOOP", "250 ")
	body := message("bdatlong", strings.Repeat("z", 1200)+"\r\n")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.sendSlow("BDAT "+itoa(len(body))+" LAST\r\n", body)
	cn.expect("500 5.5.2 ")
	cn.cmd("NOOP", "250 ")
	if n := c.count(alice); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	assertNoInternalText(t, c)
}

// NUL bytes are refused in commands and messages.
func TestNUL(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<a\x00b@remote.test>", "501 ")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<al\x00ice@"+domain+">", "501 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.expectData(message("nul", "a\x00b\r\n"), "554 5.6.0 NUL")
	cn.cmd("NOOP", "250 ")
	if n := c.count(alice); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
}

// A message that already passed through smtp-max-hops - 1 servers (its
// Received fields, whatever their case, plus ours) is a loop: 554 5.4.6.
// One hop fewer is delivered. A folded Received field counts once.
func TestMailLoop(t *testing.T) {
	c := newCluster(t, options{backends: 1, mod: func(cfg *frontend.Config) { cfg.SMTP.MaxHops = 5 }})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	hops := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "received: from hop%d.test\r\n\tby hop%d.test; Wed, 25 Nov 2026 10:00:00 +0000\r\n", i, i+1)
		}
		return b.String()
	}
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.expectData(hops(5)+message("loop", "x\r\n"), "554 5.4.6 ")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	// Received in the body does not count.
	if r := cn.data(hops(4) + message("ok", "Received: from body.test\r\nReceived: x\r\n")); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}
	if n := c.count(alice); n != 1 {
		t.Fatalf("%d messages stored", n)
	}
}

// SMTP smuggling: every sequence that some server might take for the end of
// the data is refused with the whole message, so no second message can
// hide in the first; exactly one reply comes back and nothing is stored.
func TestSmuggling(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	for _, seq := range []string{"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\n..\n", "\r\n\x00.\r\n"} {
		cn := c.dial(frontend.ListenerSMTP)
		cn.cmd("EHLO client.remote.test", "250-")
		cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
		cn.cmd("RCPT TO:<"+alice+">", "250 ")
		cn.cmd("DATA", "354 ")
		cn.send("From: a@remote.test\r\nSubject: outer\r\n\r\nouter body" + seq +
			"MAIL FROM:<admin@" + domain + ">\r\nRCPT TO:<" + alice + ">\r\nDATA\r\nFrom: admin@" + domain +
			"\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
		r := cn.reply()
		if !strings.HasPrefix(r, "554 5.5.2 ") && !strings.HasPrefix(r, "554 5.6.0 ") {
			t.Errorf("sequence %q: reply %q", seq, r)
		}
		cn.cmd("NOOP", "250 ") // no reply to a smuggled command is waiting
		cn.cmd("QUIT", "221 ")
	}
	if n := c.count(alice); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	// "\r\n.\r" followed by text: go-smtp drops the "." and CR (they are
	// not an end of data), so the commands stay text in one message.
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.cmd("DATA", "354 ")
	cn.send("Subject: outer\r\n\r\nouter\r\n.\rMAIL FROM:<admin@" + domain + ">\r\nRCPT TO:<" + alice + ">\r\nDATA\r\nsmuggled\r\n.\r\n")
	cn.expect("250 ")
	cn.cmd("NOOP", "250 ")
	box := c.inbox(alice)
	if len(box) != 1 || !strings.Contains(string(box[0]), "outer\r\nMAIL FROM:<admin@") {
		t.Fatalf("%d messages: %q", len(box), box)
	}
	assertNoInternalText(t, c)
}

// Commands pipelined after STARTTLS in the same packet are discarded
// (CVE-2011-0411 class), on every listener with STARTTLS.
func TestSTARTTLSInjection(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	for _, l := range []string{frontend.ListenerSMTP, frontend.ListenerSubmission} {
		cn := c.dial(l)
		cn.cmd("EHLO client.remote.test", "250-")
		cn.send("STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<" + alice + ">\r\n")
		cn.expect("220 ")
		tc := tls.Client(cn.c, c.tlsConfig())
		if err := tc.Handshake(); err != nil {
			t.Fatalf("%s: handshake: %v", l, err)
		}
		cn.c, cn.r, cn.tc = tc, newReader(tc), tc
		cn.cmd("EHLO client.remote.test", "250-")
		// Had the injected MAIL been run, RCPT would be accepted.
		cn.cmd("RCPT TO:<"+alice+">", "502 5.5.1 ")
		cn.cmd("NOOP", "250 ")
	}
}

// Connection limits per client address and in total, with client addresses
// from PROXY protocol headers (which are trusted only from proxy-networks).
func TestConnectionLimitsAndProxy(t *testing.T) {
	c := newCluster(t, options{backends: 1, mod: func(cfg *frontend.Config) {
		cfg.MaxConnsPerIP, cfg.MaxConns = 2, 3
		cfg.ProxyProtocol = []string{frontend.ListenerSMTP}
		cfg.ProxyNetworks = []string{"127.0.0.0/8"}
	}})
	alice := c.user("alice", "b1")
	proxied := func(ip string) *conn {
		return c.dialRaw(frontend.ListenerSMTP, "PROXY TCP4 "+ip+" 127.0.0.1 40000 25\r\n")
	}
	a := proxied("192.0.2.10")
	a.expect("220 ")
	proxied("192.0.2.10").expect("220 ")
	proxied("192.0.2.10").expect("421 4.7.0 ")
	proxied("192.0.2.11").expect("220 ")
	proxied("192.0.2.12").expect("421 4.3.2 ")
	// The PROXY source is the client: it is in the Received header.
	a.cmd("EHLO client.remote.test", "250-")
	a.mustSend(alice, message("proxied", "x\r\n"))
	rcv, _ := stripReceived(t, c.inbox(alice)[0])
	if !strings.Contains(rcv, "[192.0.2.10]") {
		t.Fatalf("Received: %q", rcv)
	}
	a.cmd("QUIT", "221 ")
	waitFor(t, func() bool { return c.fe.OpenConnections() < 3 })
	proxied("192.0.2.12").expect("220 ")
	// Without a header from a trusted network the connection is dropped.
	bad := c.dialRaw(frontend.ListenerSMTP, "EHLO x\r\n")
	if !bad.closed() {
		t.Fatal("connection without PROXY header served")
	}
}

// Slow clients: idle and DATA timeouts close the connection; a message cut
// by a timeout is not stored.
func TestTimeouts(t *testing.T) {
	c := newCluster(t, options{backends: 1, mod: func(cfg *frontend.Config) {
		cfg.SMTP.IdleTimeout = 500 * time.Millisecond
		cfg.SMTP.DataTimeout = 500 * time.Millisecond
	}})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.expect("421 4.4.2 ")
	if !cn.closed() {
		t.Fatal("idle connection not closed")
	}
	cn = c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.cmd("DATA", "354 ")
	cn.send("Subject: slow\r\n\r\nsome")
	cn.expect("451 4.4.2 ")
	if !cn.closed() {
		t.Fatal("connection not closed after a DATA timeout")
	}
	if n := c.count(alice); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
}

// A new certificate is served after ReloadTLS (what SIGHUP does).
func TestTLSReload(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	serial := func() string {
		cn := c.dial(frontend.ListenerSubmissions)
		cn.cmd("EHLO x", "250-")
		return cn.tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	c.issueCert()
	if serial() != before {
		t.Fatal("certificate changed before the reload")
	}
	if err := c.fe.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if serial() == before {
		t.Fatal("certificate not reloaded")
	}
}

// sendSlow sends parts with a pause between them, so that they arrive in
// separate reads.
func (cn *conn) sendSlow(parts ...string) {
	cn.t.Helper()
	for _, p := range parts {
		cn.send(p)
		time.Sleep(100 * time.Millisecond)
	}
}

// RSET in the middle of a BDAT transfer abandons the message; nothing is
// stored and the session goes on (go-smtp runs the data in a goroutine of
// its own: this also checks the session's state under -race).
func TestBDATReset(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	// Once: a second BDAT transfer after an abandoned one races inside
	// go-smtp v0.25.1 (handleBdat replaces c.dataResult while the
	// abandoned transfer's goroutine may still send on it).
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.send("BDAT 10\r\n0123456789")
	cn.expect("250 ")
	cn.cmd("RSET", "250 ")
	cn.cmd("NOOP", "250 ")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	if n := c.count(alice); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
}

// frontend.Run reloads the certificate on SIGHUP.
func TestRunReloadsCertificateOnSIGHUP(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.feCfg
	addr := "127.0.0.1:" + itoa(port)
	cfg.SMTPListen, cfg.SubmissionListen, cfg.SubmissionsListen = "", "", addr
	cfg.IMAPSListen, cfg.POP3SListen = "", ""
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- frontend.Run(ctx, cfg, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	serial := func() string {
		var tc *tls.Conn
		waitFor(t, func() bool {
			tc, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, c.tlsConfig())
			return err == nil
		})
		defer tc.Close()
		return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	c.issueCert()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return serial() != before })
}
