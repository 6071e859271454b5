package smtpserver_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailcluster/frontend"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Recipients are checked at RCPT time with the RFC 3463 codes of issue 4.
func TestRcptChecks(t *testing.T) {
	c := newCluster(t, options{mod: func(cfg *frontend.Config) { cfg.SMTP.MaxBadRecipients = 0 }})
	alice := c.user("alice", "b1")
	c.user("dis", "b1", "mailclusterEnabled: FALSE")
	full := c.user("full", "b2", "mailclusterQuotaMessages: 1")
	fwd := c.user("fwd", "", "mailRoutingAddress: alice@"+domain)
	c.user("away", "", "mailRoutingAddress: someone@elsewhere.test")
	// Fill full's quota.
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.mustSend(full, message("fill", "x\r\n"))

	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<nobody@"+domain+">", "550 5.1.1 ")
	cn.cmd("RCPT TO:<dis@"+domain+">", "550 5.2.1 ")
	cn.cmd("RCPT TO:<"+full+">", "452 4.2.2 ")
	cn.cmd("RCPT TO:<someone@elsewhere.test>", "554 5.7.1 ")
	cn.cmd("RCPT TO:<away@"+domain+">", "250 ") // a forward elsewhere: queued
	cn.cmd("RCPT TO:<bad address>", "501 ")
	cn.cmd("RCPT TO:<"+strings.Repeat("a", 300)+"@"+domain+">", "501 5.5.2 ")
	cn.cmd("RCPT TO:<"+fwd+">", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ") // the same account again: stored once
	if r := cn.data(message("fwd", "forwarded\r\n")); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}
	if n := len(c.inbox(alice)); n != 1 {
		t.Fatalf("alice has %d messages, want 1 (forward and direct are one account)", n)
	}
	if n := len(c.inbox(full)); n != 1 {
		t.Fatalf("full has %d messages", n)
	}
	// The forward to a remote address went to the outbound queue, bounces
	// to the original sender.
	if q := c.queued(); len(q) != 1 || len(q[0].Waiting) != 1 || q[0].Waiting[0].Address != "someone@elsewhere.test" ||
		q[0].MailFrom != "sender@remote.test" || q[0].Bounce != "" || q[0].Submitter != "" {
		t.Fatalf("queue: %+v", q)
	}
	// No open relay, whatever the sender claims.
	cn.cmd("MAIL FROM:<alice@"+domain+">", "250 ")
	cn.cmd("RCPT TO:<victim@gmail.test>", "554 5.7.1 ")
	cn.cmd("RSET", "250 ")
	// DATA without an accepted recipient.
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<nobody@"+domain+">", "550 ")
	cn.cmd("DATA", "502 ")
	// VRFY and EXPN give nothing away.
	cn.cmd("VRFY alice", "252 ")
	cn.cmd("EXPN team", "502 ")
	assertNoInternalText(t, c)
}

// The recipient cap answers 452 4.5.3 beyond the limit (default 100), and
// 10,000 RCPT commands leave the server serving.
func TestRecipientCap(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	var b strings.Builder
	for i := 0; i < 10000; i++ {
		b.WriteString("RCPT TO:<" + alice + ">\r\n")
	}
	go cn.send(b.String()) // pipelined (RFC 2920)
	for i := 0; i < 10000; i++ {
		r := cn.reply()
		want := "250 "
		if i >= 100 {
			want = "452 4.5.3 "
		}
		if !strings.HasPrefix(r, want) {
			t.Fatalf("RCPT %d: %q", i, r)
		}
	}
	if r := cn.data(message("cap", "x\r\n")); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}
	if n := len(c.inbox(alice)); n != 1 {
		t.Fatalf("%d messages", n)
	}
	// Another client is served meanwhile and after.
	c.dial(frontend.ListenerSMTP).cmd("EHLO x.test", "250-")
}

// Harvesting: after too many refused recipients the connection is closed.
func TestTooManyBadRecipients(t *testing.T) {
	c := newCluster(t, options{backends: 1, mod: func(cfg *frontend.Config) { cfg.SMTP.MaxBadRecipients = 5 }})
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	for i := 0; i < 5; i++ {
		cn.cmd("RCPT TO:<nobody"+itoa(i)+"@"+domain+">", "550 5.1.1 ")
	}
	cn.cmd("RCPT TO:<more@"+domain+">", "421 4.7.0 ")
	if !cn.closed() {
		t.Fatal("connection still open")
	}
}

// A directory outage is a temporary error at RCPT, never 5xx.
func TestRcptDirectoryDown(t *testing.T) {
	c := newCluster(t, options{backends: 1, ldapRly: true, mod: func(cfg *frontend.Config) { cfg.Directory.DownFor = 100 * time.Millisecond }})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	c.relays["ldap"].Break()
	cn.cmd("RCPT TO:<"+alice+">", "451 4.4.3 ")
	cn.cmd("RCPT TO:<nobody@"+domain+">", "451 4.4.3 ")
	c.relays["ldap"].Restore()
	waitFor(t, func() bool {
		cn.send("RCPT TO:<" + alice + ">\r\n")
		return strings.HasPrefix(cn.reply(), "250 ")
	})
	assertNoInternalText(t, c)
}

// Over quota at RCPT needs the backend; with no backend reachable the
// answer is 451 4.4.1, and a quota-less account is checked at DATA.
func TestRcptBackendDown(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	q := c.user("quota", "b1", "mailclusterQuotaBytes: 100000000")
	c.relays["b1"].Break()
	waitFor(t, func() bool { return c.fe.Pool.Backend("b1") != nil && !c.fe.Pool.Backend("b1").Healthy() })
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+q+">", "451 4.4.1 ")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// count returns the number of messages in an account's INBOX.
func (c *cluster) count(addr string) uint32 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.client().GetStatus(ctx, &mailboxv1.GetStatusRequest{AccountId: c.accountID(addr), Name: "INBOX"})
	if err != nil {
		if strings.Contains(err.Error(), "NotFound") {
			return 0
		}
		c.t.Fatal(err)
	}
	return st.Messages
}

var storedAsID = regexp.MustCompile(`stored as \S+`)

// assertNoInternalText checks that no reply any client of the test got
// carries internal error text (gRPC, SQL, LDAP, Go errors).
func assertNoInternalText(t *testing.T, c *cluster) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.replies {
		// The random message id in "stored as <id>" may spell anything
		// ("…S3…", "…EOF…"): it is not error text.
		l := strings.ToLower(storedAsID.ReplaceAllString(r, "stored as <id>"))
		for _, bad := range []string{"rpc error", "ldap", "sql", "dial tcp", "context ", "desc =", "eof", "sasl:", "connection refused", "s3"} {
			if strings.Contains(l, bad) {
				t.Errorf("reply leaks internal text %q: %q", bad, r)
			}
		}
	}
}
