package smtpserver_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"mailcluster/frontend"
)

func plain(login, password string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + login + "\x00" + password))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// Submission on 587: AUTH only after STARTTLS, MAIL FROM only the user's
// own addresses, local recipients delivered, remote ones queued with the
// same message (bounces to the user's INBOX).
func TestSubmission(t *testing.T) {
	c := newCluster(t, options{})
	alice := c.user("alice", "b1", "mailLocalAddress: a.smith@"+domain)
	bob := c.user("bob", "b2")
	cn := c.dial(frontend.ListenerSubmission)
	ehlo := cn.cmd("EHLO laptop", "250-")
	if strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("EHLO before TLS:\n%s", ehlo)
	}
	cn.cmd("AUTH PLAIN "+plain(alice, "secret"), "523 5.7.10 ")
	cn.cmd("MAIL FROM:<"+alice+">", "530 5.7.0 ")
	cn.starttls(c.tlsConfig())
	ehlo = cn.cmd("EHLO laptop", "250-")
	if !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO after TLS:\n%s", ehlo)
	}
	cn.cmd("MAIL FROM:<"+alice+">", "530 5.7.0 ")
	cn.cmd("AUTH PLAIN "+plain("alice", "secret"), "235 ")
	cn.cmd("AUTH PLAIN "+plain("alice", "secret"), "503 ")
	cn.cmd("MAIL FROM:<"+bob+">", "553 5.7.1 ")
	cn.cmd("MAIL FROM:<>", "553 5.7.1 ")
	cn.cmd("MAIL FROM:<nobody@"+domain+">", "553 5.7.1 ")
	cn.cmd("MAIL FROM:<a.smith+lists@"+domain+">", "250 ")
	cn.cmd("RSET", "250 ")
	cn.cmd("MAIL FROM:<"+alice+">", "250 ")
	cn.cmd("RCPT TO:<friend@ElseWhere.TEST>", "250 ")
	cn.cmd("RCPT TO:<"+bob+">", "250 ")
	msg := message("submitted", "Hi Bob\r\n")
	if r := cn.data(msg); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}
	box := c.inbox(bob)
	if len(box) != 1 {
		t.Fatalf("bob has %d messages", len(box))
	}
	rcv, rest := stripReceived(t, box[0])
	// Two recipients (one remote): no "for" clause, which names one only.
	if string(rest) != msg || !strings.Contains(rcv, "with ESMTPSA") || strings.Contains(rcv, " for <") {
		t.Fatalf("Received %q; rest %q", rcv, rest)
	}
	q := c.queued()
	if len(q) != 1 || len(q[0].Waiting) != 1 || q[0].Waiting[0].Address != "friend@elsewhere.test" ||
		q[0].MailFrom != alice || q[0].Bounce != c.accountID(alice) || q[0].Submitter != c.accountID(alice) {
		t.Fatalf("queue: %+v", q)
	}
	// One body for the local copy and the queued one.
	if q[0].Size != int64(len(box[0])) {
		t.Fatalf("queued size %d, stored %d", q[0].Size, len(box[0]))
	}
	// Only remote recipients: queued, 250.
	cn.cmd("MAIL FROM:<"+alice+">", "250 ")
	// A remote path the queue could not send on (go-smtp unquotes it).
	cn.cmd(`RCPT TO:<"a b"@far.test>`, "501 5.1.3 ")
	cn.cmd("RCPT TO:<x@far.test>", "250 ")
	cn.cmd("RCPT TO:<y@far.test>", "250 ")
	if r := cn.data(message("remote only", "Hi\r\n")); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}
	if q := c.queued(); len(q) != 2 || len(q[1].Waiting) != 2 {
		t.Fatalf("queue: %+v", q)
	}
	assertNoInternalText(t, c)
}

// AUTH LOGIN, with and without an initial response; 465 speaks TLS at once.
func TestSubmissionsLoginMechanism(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSubmissions)
	ehlo := cn.cmd("EHLO laptop", "250-")
	if !strings.Contains(ehlo, "AUTH PLAIN LOGIN") || strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("EHLO on 465:\n%s", ehlo)
	}
	cn.cmd("AUTH LOGIN", "334 "+b64("Username:"))
	cn.cmd(b64(alice), "334 "+b64("Password:"))
	cn.cmd(b64("secret"), "235 ")
	cn.cmd("MAIL FROM:<"+alice+">", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	if r := cn.data(message("self", "note to self\r\n")); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}
	cn2 := c.dial(frontend.ListenerSubmissions)
	cn2.cmd("EHLO laptop", "250-")
	cn2.cmd("AUTH LOGIN "+b64("alice"), "334 "+b64("Password:"))
	cn2.cmd(b64("secret"), "235 ")
	cn3 := c.dial(frontend.ListenerSubmissions)
	cn3.cmd("EHLO laptop", "250-")
	cn3.cmd("AUTH PLAIN", "334 ")
	cn3.cmd("*", "501 ")
	// RFC 4954 4 asks for 501; go-smtp answers 454 4.7.0 itself.
	cn3.cmd("AUTH PLAIN !!!notbase64", "454 4.7.0 Invalid base64")
	cn3.cmd("AUTH CRAM-MD5", "504 ")
	cn3.cmd("AUTH PLAIN "+b64("only-one-part"), "501 ")
	if n := c.count(alice); n != 1 {
		t.Fatalf("%d messages", n)
	}
	assertNoInternalText(t, c)
}

// Bad credentials get 535 5.7.8 after a delay that grows with each failure;
// a connection is closed after smtp-max-auth-failures; a disabled account
// cannot log in.
func TestAuthBruteForce(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	c.user("dis", "b1", "mailclusterEnabled: FALSE")
	var took []time.Duration
	for i := 0; i < 4; i++ {
		cn := c.dial(frontend.ListenerSubmissions)
		cn.cmd("EHLO laptop", "250-")
		start := time.Now()
		cn.cmd("AUTH PLAIN "+plain(alice, "wrong"), "535 5.7.8 ")
		took = append(took, time.Since(start))
	}
	// Directory delays: 0, 50ms, 100ms, 200ms (auth-delay-base 50ms).
	if took[3] < 150*time.Millisecond || took[2] < 80*time.Millisecond {
		t.Errorf("delays do not grow: %v", took)
	}
	cn := c.dial(frontend.ListenerSubmissions)
	cn.cmd("EHLO laptop", "250-")
	cn.cmd("AUTH PLAIN "+plain("dis", "secret"), "535 5.7.8 ")
	cn.cmd("AUTH PLAIN "+plain("dis", "wrong"), "535 5.7.8 ")
	cn.cmd("AUTH PLAIN "+plain("x", "y"), "421 4.7.0 ")
	if !cn.closed() {
		t.Fatal("connection not closed after 3 failures")
	}
	// The right password still works (after the delay).
	cn = c.dial(frontend.ListenerSubmissions)
	cn.cmd("EHLO laptop", "250-")
	cn.cmd("AUTH PLAIN "+plain(alice, "secret"), "235 ")
	assertNoInternalText(t, c)
}

// smtp-insecure-auth (local development) offers AUTH without TLS on 587.
func TestInsecureAuthForDevelopment(t *testing.T) {
	c := newCluster(t, options{backends: 1, mod: func(cfg *frontend.Config) { cfg.SMTP.InsecureAuth = true }})
	c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSubmission)
	if ehlo := cn.cmd("EHLO laptop", "250-"); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO:\n%s", ehlo)
	}
	cn.cmd("AUTH PLAIN "+plain("alice", "secret"), "235 ")
	// Port 25 still has no AUTH.
	cn25 := c.dial(frontend.ListenerSMTP)
	if ehlo := cn25.cmd("EHLO laptop", "250-"); strings.Contains(ehlo, "AUTH") {
		t.Fatalf("port 25 EHLO:\n%s", ehlo)
	}
}

// Submitted mail without Date or Message-ID gets them (RFC 6409 8.2, 8.3),
// right after the Received field; what the client sent follows unchanged.
// Mail arriving on port 25 is never changed.
func TestSubmissionAddsMissingFields(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSubmissions)
	cn.cmd("EHLO laptop", "250-")
	cn.cmd("AUTH PLAIN "+plain("alice", "secret"), "235 ")
	bare := "From: <" + alice + ">\r\nSubject: no id\r\n\r\nbody\r\n"
	withDate := "From: <" + alice + ">\r\ndate: Wed, 25 Nov 2026 16:00:00 +0000\r\nSubject: dated\r\n\r\nbody\r\n"
	headerOnly := "From: <" + alice + ">\r\nMessage-Id: <x@y>\r\n"
	// A 105 KB header, held back across several reads.
	big := "From: <" + alice + ">\r\n" + strings.Repeat("X-Long: "+strings.Repeat("v", 690)+"\r\n", 150) + "\r\nbody\r\n"
	for _, m := range []string{bare, withDate, headerOnly, big} {
		cn.cmd("MAIL FROM:<"+alice+">", "250 ")
		cn.cmd("RCPT TO:<"+alice+">", "250 ")
		if r := cn.data(m); !strings.HasPrefix(r, "250 ") {
			t.Fatal(r)
		}
	}
	box := c.inbox(alice)
	if len(box) != 4 {
		t.Fatalf("%d messages", len(box))
	}
	check := func(i int, want []string, orig string) {
		t.Helper()
		_, rest := stripReceived(t, box[i])
		s := string(rest)
		if !strings.HasSuffix(s, orig) {
			t.Fatalf("message %d does not end with what was sent:\n%q", i, s)
		}
		added := strings.TrimSuffix(s, orig)
		for _, w := range want {
			if !strings.Contains(added, w) {
				t.Errorf("message %d: added %q, want %q", i, added, w)
			}
		}
		if strings.Count(added, "\r\n") != len(want) {
			t.Errorf("message %d: added %q", i, added)
		}
	}
	check(0, []string{"Date: ", "Message-ID: <"}, bare)
	check(1, []string{"Message-ID: <"}, withDate)
	check(2, []string{"Date: "}, headerOnly)
	check(3, []string{"Date: ", "Message-ID: <"}, big)
	if !strings.Contains(string(box[0]), "@mx.example.test>\r\n") {
		t.Errorf("Message-ID not in the host's domain:\n%s", box[0])
	}

	// Port 25: unchanged.
	in := c.dial(frontend.ListenerSMTP)
	in.cmd("EHLO client.remote.test", "250-")
	in.cmd("MAIL FROM:<x@remote.test>", "250 ")
	in.cmd("RCPT TO:<"+alice+">", "250 ")
	if r := in.data(bare); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}
	box = c.inbox(alice)
	if _, rest := stripReceived(t, box[4]); string(rest) != bare {
		t.Fatalf("inbound message changed: %q", rest)
	}
}
