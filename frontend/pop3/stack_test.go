package pop3

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"mailcluster/frontend/listener"
	"mailcluster/frontend/pool"
	mailboxv1 "mailcluster/proto/mailbox/v1"

	"github.com/prometheus/client_golang/prometheus"
)

// Every command in every state, over real sockets against the real stack.
func TestCommandsInEveryState(t *testing.T) {
	s := newStack(t, stackOptions{})
	acct := s.user("alice")
	s.deliver(acct, msg("one", "hello"), msg("two", "world", "second line"))

	c := s.dial()
	// AUTHORIZATION before TLS.
	capa := c.capa()
	if !slices.Contains(capa, "STLS") || slices.Contains(capa, "USER") || slices.Contains(capa, "SASL PLAIN") {
		t.Fatalf("CAPA before STLS: %q", capa)
	}
	for _, want := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"} {
		if !slices.Contains(capa, want) {
			t.Fatalf("CAPA lacks %s: %q", want, capa)
		}
	}
	for _, cmd := range []string{"STAT", "LIST", "LIST 1", "UIDL", "UIDL 1", "RETR 1", "TOP 1 0", "DELE 1", "RSET", "NOOP"} {
		c.expect(cmd, "-ERR Command not valid in this state.")
	}
	c.expect("USER alice", "-ERR [AUTH] Plaintext authentication disallowed")
	c.expect("PASS secret", "-ERR [AUTH] Plaintext authentication disallowed")
	c.expect("AUTH PLAIN "+plain("alice", "secret"), "-ERR [AUTH] Plaintext authentication disallowed")
	c.expect("APOP alice 0123456789abcdef0123456789abcdef", "-ERR APOP is not supported")
	c.stls(s.roots)
	capa = c.capa()
	if slices.Contains(capa, "STLS") || !slices.Contains(capa, "USER") || !slices.Contains(capa, "SASL PLAIN") {
		t.Fatalf("CAPA after STLS: %q", capa)
	}
	c.expect("STLS", "-ERR TLS is already active.")
	c.expect("PASS secret", "-ERR No username given.")
	c.expect("USER alice", "+OK")
	c.expect("PASS wrong", "-ERR [AUTH] Authentication failed.")
	c.expect("PASS secret", "-ERR No username given.") // USER again after a failure
	c.expect("USER alice", "+OK")
	c.expect("PASS secret", "+OK Logged in, 2 messages")

	// TRANSACTION.
	capa = c.capa()
	if slices.Contains(capa, "USER") || slices.Contains(capa, "STLS") || slices.Contains(capa, "SASL PLAIN") {
		t.Fatalf("CAPA in TRANSACTION: %q", capa)
	}
	for _, cmd := range []string{"USER alice", "PASS secret", "AUTH PLAIN " + plain("alice", "secret"), "STLS", "APOP alice x"} {
		c.expect(cmd, "-ERR Command not valid in this state.")
	}
	inbox := s.inbox(acct)
	m1, m2 := msg("one", "hello"), msg("two", "world", "second line")
	c.expect("STAT", fmt.Sprintf("+OK 2 %d", len(m1)+len(m2)))
	c.expect("LIST", fmt.Sprintf("+OK 2 messages (%d octets)", len(m1)+len(m2)))
	if got := c.lines(); !slices.Equal(got, []string{fmt.Sprintf("1 %d", len(m1)), fmt.Sprintf("2 %d", len(m2))}) {
		t.Fatalf("LIST: %q", got)
	}
	c.expect("LIST 2", fmt.Sprintf("+OK 2 %d", len(m2)))
	uidl := func(i int) string { return fmt.Sprintf("%08X%08X", inbox[i].Uid, uidValidity(t, s, acct)) }
	c.expect("UIDL", "+OK")
	if got := c.lines(); !slices.Equal(got, []string{"1 " + uidl(0), "2 " + uidl(1)}) {
		t.Fatalf("UIDL: %q", got)
	}
	c.expect("UIDL 1", "+OK 1 "+uidl(0))
	c.expect("RETR 1", fmt.Sprintf("+OK %d octets", len(m1)))
	if got := string(c.body()); got != m1 {
		t.Fatalf("RETR: %q", got)
	}
	c.expect("TOP 2 1", "+OK")
	if got := string(c.body()); got != string(topRef([]byte(m2), 1)) || !strings.HasSuffix(got, "\r\n\r\nworld\r\n") {
		t.Fatalf("TOP: %q", got)
	}
	c.expect("NOOP", "+OK")
	c.expect("DELE 1", "+OK Message 1 marked for deletion.")
	c.expect("STAT", fmt.Sprintf("+OK 1 %d", len(m2)))
	c.expect("LIST", "+OK 1 messages")
	if got := c.lines(); !slices.Equal(got, []string{fmt.Sprintf("2 %d", len(m2))}) {
		t.Fatalf("LIST after DELE: %q", got)
	}
	c.expect("RETR 1", "-ERR Message is deleted.")
	c.expect("RSET", "+OK 2 messages")
	c.expect("RETR 1", "+OK")
	c.body()
	c.expect("QUIT", "+OK Logging out.")
	c.closed()
	s.wantCount(acct, 2)

	// QUIT in AUTHORIZATION.
	c = s.dial()
	c.expect("QUIT", "+OK Logging out.")
	c.closed()
}

func uidValidity(t testing.TB, s *stack, acct string) uint32 {
	sel, err := s.direct["b1"].Select(ctxT(t), &mailboxv1.SelectRequest{AccountId: acct, Name: "INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	return sel.Status.UidValidity
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// RETR is byte-exact and TOP cuts exactly: lines starting with '.', 8-bit
// bodies, long lines, a body without a final CRLF, bare LFs.
func TestRetrAndTopByteExact(t *testing.T) {
	s := newStack(t, stackOptions{})
	acct := s.user("bob")
	long := strings.Repeat("x", 20000)
	eight := "Gr\xfc\xdfe, \xe2\x82\xac \xff\xfe\x00\x01 raw 8-bit"
	msgs := []string{
		msg("dots", ".", "..", ".leading", "...three", "middle . dot", "."),
		msg("eight bit", eight, "Ünïcödé ✓"),
		msg("long line", long, "."+long),
		"Subject: no final CRLF\r\n\r\nlast line without ending",
		"Subject: bare LF\n\n.dot after LF\nline\n",
		"Subject: only a header\r\n",
		msg("empty body"),
	}
	s.deliver(acct, msgs...)
	c := s.login("bob")
	c.expect("LIST", "+OK")
	sizes := c.lines()
	for i, m := range msgs {
		n := i + 1
		m = crlf(m) // the backend stores bare LFs as CRLF (mailbox.proto)
		if sizes[i] != fmt.Sprintf("%d %d", n, len(m)) {
			t.Fatalf("LIST of %d: %q, want size %d", n, sizes[i], len(m))
		}
		c.expect(fmt.Sprintf("RETR %d", n), fmt.Sprintf("+OK %d octets", len(m)))
		got := c.body()
		if want := wantOnWire([]byte(m)); !bytes.Equal(got, want) {
			t.Fatalf("RETR %d: got %q, want %q", n, trunc(got), trunc(want))
		}
		for _, lines := range []int{0, 1, 2, 3, 100, 999999999} {
			c.expect(fmt.Sprintf("TOP %d %d", n, lines), "+OK")
			got := c.body()
			if want := wantOnWire(topRef([]byte(m), lines)); !bytes.Equal(got, want) {
				t.Fatalf("TOP %d %d: got %q, want %q", n, lines, trunc(got), trunc(want))
			}
		}
	}
	// The stuffing on the wire, exactly.
	c.send("RETR 1")
	var raw []byte
	for !bytes.HasSuffix(raw, []byte("\r\n.\r\n")) {
		l, err := c.r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, l...)
	}
	if !bytes.HasSuffix(raw, []byte("\r\n\r\n..\r\n...\r\n..leading\r\n....three\r\nmiddle . dot\r\n..\r\n.\r\n")) {
		t.Fatalf("stuffed RETR: %q", raw)
	}
	c.expect("QUIT", "+OK")
}

// crlf turns bare LFs into CRLF.
func crlf(m string) string {
	var b strings.Builder
	for i := 0; i < len(m); i++ {
		if m[i] == '\n' && (i == 0 || m[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(m[i])
	}
	return b.String()
}

func trunc(b []byte) string {
	if len(b) > 200 {
		return string(b[:100]) + "…" + string(b[len(b)-100:])
	}
	return string(b)
}

// QUIT in the UPDATE state expunges exactly the marked messages, durably;
// a dropped connection deletes nothing; RETR sets \Seen at QUIT only; new
// mail does not change a session's maildrop; UIDLs stay the same.
func TestUpdateState(t *testing.T) {
	s := newStack(t, stackOptions{})
	acct := s.user("carol")
	for i := 1; i <= 5; i++ {
		s.deliver(acct, msg(fmt.Sprintf("m%d", i), fmt.Sprintf("body %d", i)))
	}
	before := s.inbox(acct)

	// Dropped connection: nothing happens.
	c := s.login("carol")
	c.expect("RETR 1", "+OK")
	c.body()
	c.expect("DELE 1", "+OK")
	c.expect("DELE 2", "+OK")
	c.c.Close()
	time.Sleep(200 * time.Millisecond)
	after := s.inbox(acct)
	if len(after) != 5 {
		t.Fatalf("dropped connection deleted messages: %d left", len(after))
	}
	for _, m := range after {
		if m.Flags.GetSystem() != 0 {
			t.Fatalf("dropped connection changed flags: %v", m)
		}
	}

	// Another client marks message 5 \Deleted: POP3's QUIT must not expunge it.
	if _, err := s.direct["b1"].StoreFlags(ctxT(t), &mailboxv1.StoreFlagsRequest{AccountId: acct, MailboxId: mailboxID(t, s, acct),
		Uids: &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: before[4].Uid, End: before[4].Uid}}}, Mode: mailboxv1.StoreMode_STORE_MODE_ADD,
		Flags: &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_DELETED)}}); err != nil {
		t.Fatal(err)
	}

	c = s.login("carol")
	c.expect("UIDL", "+OK")
	uidls := c.lines()
	c.expect("RETR 3", "+OK")
	c.body()
	c.expect("DELE 1", "+OK")
	c.expect("DELE 2", "+OK")
	c.expect("DELE 2", "-ERR Message is deleted.")
	// New mail during the session is not part of it.
	s.deliver(acct, msg("m6", "new"))
	c.expect("STAT", "+OK 3 ")
	c.expect("LIST 6", "-ERR There's no message 6.")
	c.expect("QUIT", "+OK Logging out.")
	c.closed()

	// Durable once +OK: the backend has exactly 3, 4, 5 and 6.
	after = s.inbox(acct)
	var uids []uint32
	for _, m := range after {
		uids = append(uids, m.Uid)
	}
	if want := []uint32{before[2].Uid, before[3].Uid, before[4].Uid, after[len(after)-1].Uid}; !slices.Equal(uids, want) || len(after) != 4 {
		t.Fatalf("after QUIT: %v, want %v", uids, want)
	}
	if after[0].Flags.GetSystem()&uint32(mailboxv1.Flag_FLAG_SEEN) == 0 {
		t.Fatal("RETR did not set \\Seen at QUIT")
	}
	if after[1].Flags.GetSystem()&uint32(mailboxv1.Flag_FLAG_SEEN) != 0 {
		t.Fatal("\\Seen set on a message not retrieved")
	}

	// UIDLs are stable across sessions: the survivors keep theirs.
	c = s.login("carol")
	c.expect("UIDL", "+OK")
	got := c.lines()
	if len(got) != 4 || strings.Fields(got[0])[1] != strings.Fields(uidls[2])[1] || strings.Fields(got[2])[1] != strings.Fields(uidls[4])[1] {
		t.Fatalf("UIDL before %q, after %q", uidls, got)
	}
	c.expect("QUIT", "+OK")
}

func mailboxID(t testing.TB, s *stack, acct string) int64 {
	sel, err := s.direct["b1"].Select(ctxT(t), &mailboxv1.SelectRequest{AccountId: acct, Name: "INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	return sel.Status.MailboxId
}

// Two sessions for one user at once both work: nothing is lost or
// duplicated (no [IN-USE] lock; see doc.go).
func TestTwoSessions(t *testing.T) {
	s := newStack(t, stackOptions{})
	acct := s.user("dave")
	s.deliver(acct, msg("a", "1"), msg("b", "2"), msg("c", "3"))
	a, b := s.login("dave"), s.login("dave")
	a.expect("DELE 1", "+OK")
	a.expect("DELE 2", "+OK")
	b.expect("DELE 2", "+OK")
	a.expect("QUIT", "+OK Logging out.")
	// b still numbers the maildrop as at its login; message 1 is gone.
	b.expect("LIST 1", "+OK 1 ")
	b.expect("RETR 1", "-ERR Message was removed by another session.")
	b.expect("TOP 1 0", "-ERR Message was removed by another session.")
	b.expect("RETR 3", "+OK")
	b.body()
	b.expect("QUIT", "+OK Logging out.")
	left := s.inbox(acct)
	if len(left) != 1 {
		t.Fatalf("%d messages left, want 1", len(left))
	}
	c := s.login("dave")
	c.expect("STAT", fmt.Sprintf("+OK 1 %d", len(msg("c", "3"))))
	c.expect("QUIT", "+OK")
}

// UIDL is the same whichever backend serves the session (failover).
func TestUIDLAcrossBackends(t *testing.T) {
	s := newStack(t, stackOptions{backends: 2})
	acct := s.user("erin", "mailHost: b1")
	s.deliver(acct, msg("x", "1"), msg("y", "2"))
	c := s.login("erin")
	c.expect("UIDL", "+OK")
	first := c.lines()
	c.expect("QUIT", "+OK")
	s.relays["b1"].Break()
	deadline := time.Now().Add(10 * time.Second)
	for s.pool.Backend("b1").Healthy() {
		if time.Now().After(deadline) {
			t.Fatal("b1 still healthy")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c = s.login("erin")
	c.expect("UIDL", "+OK")
	if second := c.lines(); !slices.Equal(first, second) {
		t.Fatalf("UIDL through b1 %q, through b2 %q", first, second)
	}
	c.expect("DELE 1", "+OK")
	c.expect("QUIT", "+OK")
	s.wantCount(acct, 1)
}

// Implicit TLS (995) and STLS; commands pipelined after STLS are discarded.
func TestTLS(t *testing.T) {
	s := newStack(t, stackOptions{})
	acct := s.user("frank")
	s.deliver(acct, msg("tls", "secret stuff"))

	c := s.dialTLS()
	capa := c.capa()
	if slices.Contains(capa, "STLS") || !slices.Contains(capa, "USER") || !slices.Contains(capa, "SASL PLAIN") {
		t.Fatalf("CAPA on 995: %q", capa)
	}
	c.expect("STLS", "-ERR TLS is already active.")
	c.expect("USER frank", "+OK")
	c.expect("PASS secret", "+OK Logged in, 1 messages")
	c.expect("RETR 1", "+OK")
	if got := string(c.body()); got != msg("tls", "secret stuff") {
		t.Fatalf("%q", got)
	}
	c.expect("QUIT", "+OK")

	// Injection: "USER frank" sent in plaintext in the same packet as STLS
	// must not be executed inside TLS.
	c = s.dial()
	c.send("STLS\r\nUSER frank")
	if l := c.line(); l != "+OK Begin TLS negotiation now." {
		t.Fatal(l)
	}
	tc := tls.Client(c.c, &tls.Config{RootCAs: s.roots, ServerName: "pop.example.test"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.c, c.r = tc, bufio.NewReader(tc)
	c.expect("PASS secret", "-ERR No username given.")
	c.expect("USER frank", "+OK")
	c.expect("PASS secret", "+OK")

	// A failed handshake closes the connection.
	c = s.dial()
	c.expect("STLS", "+OK")
	c.send("this is not a TLS client hello")
	c.closed()
}

// SASL PLAIN (RFC 5034): initial response, continuation, cancel, failures.
func TestSASLPlain(t *testing.T) {
	s := newStack(t, stackOptions{})
	acct := s.user("grace")
	s.user("heidi", "mailclusterEnabled: FALSE")
	s.deliver(acct, msg("sasl", "ok"))
	c := s.dialTLS()
	c.expect("AUTH", "+OK")
	if got := c.lines(); !slices.Equal(got, []string{"PLAIN"}) {
		t.Fatalf("AUTH list: %q", got)
	}
	c.expect("AUTH LOGIN", "-ERR Unsupported authentication mechanism.")
	c.expect("AUTH CRAM-MD5", "-ERR Unsupported authentication mechanism.")
	c.expect("AUTH PLAIN", "+ ")
	c.expect("*", "-ERR Authentication canceled.")
	c.expect("AUTH PLAIN", "+ ")
	c.expect("not base64!", "-ERR Invalid SASL PLAIN response.")
	start := time.Now()
	c.expect("AUTH PLAIN "+plain("grace", "wrong"), "-ERR [AUTH] Authentication failed.")
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("failed login answered after %v, want the delay", d)
	}
	c.expect("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("admin\x00grace\x00secret")), "-ERR [AUTH] Authentication failed.")
	c.expect("AUTH PLAIN "+plain("grace", "nope"), "-ERR [AUTH] Authentication failed.")
	c.closed() // MaxAuthFailures (3)

	c = s.dialTLS()
	c.expect("AUTH PLAIN "+plain("heidi", "secret"), "-ERR [SYS/PERM] Account disabled.")
	c.expect("AUTH PLAIN", "+ ")
	c.expect(plain("grace@example.test", "secret"), "+OK Logged in, 1 messages")
	c.expect("STAT", "+OK 1 ")
	c.expect("QUIT", "+OK")

	c = s.dialTLS()
	c.expect("auth plain "+base64.StdEncoding.EncodeToString([]byte("grace\x00grace\x00secret")), "+OK Logged in")
	c.expect("QUIT", "+OK")
}

// Hostile input gets a clear error and changes nothing.
func TestHostileInput(t *testing.T) {
	s := newStack(t, stackOptions{})
	acct := s.user("ivan")
	s.deliver(acct, msg("h1", "1"), msg("h2", "2"))
	c := s.login("ivan")
	for cmd, want := range map[string]string{
		"RETR 0":          "-ERR There's no message 0.",
		"RETR -1":         "-ERR Invalid message number.",
		"RETR 99999999":   "-ERR There's no message 99999999.",
		"RETR 9999999999": "-ERR Invalid message number.",
		"RETR +1":         "-ERR Invalid message number.",
		"RETR 1x":         "-ERR Invalid message number.",
		"TOP 1 -1":        "-ERR Invalid number of lines.",
		"TOP 0 1":         "-ERR There's no message 0.",
		"DELE 0":          "-ERR There's no message 0.",
		"DELE 3":          "-ERR There's no message 3.",
		"LIST 0":          "-ERR There's no message 0.",
		"UIDL 99999999":   "-ERR There's no message 99999999.",
		"RETR":            "-ERR RETR needs one message number.",
		"RETR 1 2":        "-ERR RETR needs one message number.",
		"TOP 1":           "-ERR TOP needs a message number and a line count.",
		"LIST 1 2":        "-ERR Too many arguments.",
		"STAT 1":          "-ERR STAT takes no arguments.",
	} {
		c.expect(cmd, want)
	}
	c.expect("QUIT", "+OK")
	s.wantCount(acct, 2)

	// NUL bytes, garbage and unknown commands, pipelined in one write.
	c = s.dial()
	c.send("NOOP\x00\r\nHELO there\r\n\x00\x00\x00\r\nX\r\nCAPA\r\nRETRIEVE 1\r\n\xff\xfe")
	for _, want := range []string{"-ERR Invalid command.", "-ERR Unknown command.", "-ERR Invalid command.", "-ERR Invalid command.", "+OK Capability"} {
		if l := c.line(); !strings.HasPrefix(l, want) {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
	c.lines()
	for i := 0; i < 2; i++ { // RETRIEVE 1, \xff\xfe
		if l := c.line(); l != "-ERR Invalid command." {
			t.Fatal(l)
		}
	}
	c.expect("QUIT", "+OK")

	// Too many bad commands close the connection.
	c = s.dial()
	var b strings.Builder
	for i := 0; i < 30; i++ {
		b.WriteString("garbage\r\n")
	}
	c.send(strings.TrimSuffix(b.String(), "\r\n"))
	for i := 0; i < 19; i++ {
		c.line()
	}
	if l := c.line(); l != "-ERR Too many invalid commands." {
		t.Fatal(l)
	}
	c.closed()

	// Too many commands before authentication.
	c = s.dial()
	for i := 0; i < 30; i++ {
		c.expect("CAPA", "+OK")
		c.lines()
	}
	c.expect("CAPA", "-ERR Too many commands before authentication.")
	c.closed()

	// A 10 KB line closes the connection, before and after login.
	c = s.dial()
	c.expect("USER "+strings.Repeat("a", 10<<10), "-ERR Line too long.")
	c.closed()
	c = s.login("ivan")
	c.expect("RETR "+strings.Repeat("1", 10<<10), "-ERR Line too long.")
	c.closed()
	s.wantCount(acct, 2)
}

// Directory or backend unavailable: -ERR [SYS/TEMP], nothing lost, no
// internal text (client.line checks every response).
func TestTemporaryFailures(t *testing.T) {
	s := newStack(t, stackOptions{mod: func(c *Config) { c.BackendTimeout = 2 * time.Second }})
	acct := s.user("judy")
	s.deliver(acct, msg("t1", "1"), msg("t2", "2"))

	// LDAP down.
	s.relays["ldap"].Break()
	c := s.dialTLS()
	c.expect("USER judy", "+OK")
	c.expect("PASS secret", "-ERR [SYS/TEMP]")
	s.relays["ldap"].Restore()
	for i := 0; ; i++ {
		c.expect("USER judy", "+OK")
		l := c.cmd("PASS secret")
		if strings.HasPrefix(l, "+OK Logged in") {
			break
		}
		if !strings.HasPrefix(l, "-ERR [SYS/TEMP]") || i == 20 {
			t.Fatalf("after LDAP came back: %q", l)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Backend down in TRANSACTION: RETR, TOP and QUIT fail temporarily;
	// nothing is deleted.
	c.expect("DELE 1", "+OK")
	s.relays["b1"].Break()
	c.expect("RETR 2", "-ERR [SYS/TEMP]")
	c.expect("TOP 2 0", "-ERR [SYS/TEMP]")
	c.expect("LIST", "+OK") // the maildrop is in the session
	c.lines()
	c.expect("QUIT", "-ERR [SYS/TEMP] Some deleted messages were not removed")
	c.closed()
	s.wantCount(acct, 2)

	// Backend down at login.
	c = s.dialTLS()
	c.expect("USER judy", "+OK")
	c.expect("PASS secret", "-ERR [SYS/TEMP]")
	s.relays["b1"].Restore()
	deadline := time.Now().Add(10 * time.Second)
	for !s.pool.Backend("b1").Healthy() {
		if time.Now().After(deadline) {
			t.Fatal("b1 not healthy again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.expect("USER judy", "+OK")
	c.expect("PASS secret", "+OK Logged in, 2 messages")
	for _, m := range s.inbox(acct) {
		if m.Flags.GetSystem() != 0 {
			t.Fatalf("flags left behind: %v", m)
		}
	}
	c.expect("DELE 1", "+OK")
	c.expect("QUIT", "+OK")
	s.wantCount(acct, 1)
}

// The idle timeout closes a silent client with a message; graceful shutdown
// tells waiting clients to come back.
func TestIdleAndShutdown(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.user("kim")
	// A second server with an idle timeout below the minimum, for the test.
	cfg := s.srv.cfg
	cfg.IdleTimeout = 300 * time.Millisecond
	quick := NewServer(cfg, s.dir, s.pool, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go quick.Serve(l)
	defer quick.Close()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, conn)
	start := time.Now()
	if l := c.line(); l != "-ERR Disconnected for inactivity." || time.Since(start) < 250*time.Millisecond {
		t.Fatal(l, time.Since(start))
	}
	c.closed()

	// A client that stops reading in the middle of a RETR is dropped after
	// the idle timeout, and nothing is deleted.
	acct := s.user("lee")
	big := msg("big", strings.Repeat(strings.Repeat("z", 998)+"\r\n", 16<<10)) // 16 MiB
	s.deliver(acct, big)
	conn, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c = newClient(t, conn)
	c.stls(s.roots)
	c.expect("USER lee", "+OK")
	c.expect("PASS secret", "+OK Logged in, 1 messages")
	c.expect("DELE 1", "+OK")
	c.send("RSET")
	c.line()
	c.send("RETR 1") // and read nothing more
	deadline := time.Now().Add(15 * time.Second)
	for testutilGauge(t, quick) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("session still open with a client that does not read")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.wantCount(acct, 1)

	c = s.login("kim")
	done := make(chan error)
	go func() { done <- s.srv.Close() }()
	if l := c.line(); l != "-ERR [SYS/TEMP] Server shutting down, try again later." {
		t.Fatal(l)
	}
	c.closed()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.IdleTimeout = 9 * time.Minute
	cfg.MaxLineLength = 100
	cfg.MaxAuthFailures = 0
	cfg.MaxMessages = -1
	err := cfg.Validate()
	for _, name := range []string{"pop3-idle-timeout", "pop3-max-line-length", "pop3-max-auth-failures", "pop3-max-messages"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Fatalf("%v does not name %s", err, name)
		}
	}
}

// wantCount checks how many messages the account's INBOX has.
func (s *stack) wantCount(acct string, want int) {
	s.t.Helper()
	if n := len(s.inbox(acct)); n != want {
		s.t.Fatalf("INBOX has %d messages, want %d", n, want)
	}
}

// Behind the frontend's listener (connection limits, PROXY protocol), a
// refused client gets a POP3 line and the session sees the PROXY source.
func TestBehindListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := listener.New(inner, listener.Config{Name: "pop3", Proxy: true, ProxyFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Limits: listener.NewLimits(0, 1), Busy: Busy})
	cfg := DefaultConfig()
	cfg.Hostname = "pop.example.test"
	cfg.InsecureAuth = true
	cfg.AuthFailureDelay = 0
	var logs logBuffer
	srv := NewServer(cfg, fakeAuth{}, fakeRouter{&pool.Backend{Client: newFakeMailbox("Subject: x\r\n\r\ny\r\n")}},
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	go srv.Serve(l)
	defer srv.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "PROXY TCP4 192.0.2.7 192.0.2.1 5555 110\r\n")
		return c
	}
	c := newClient(t, dial())
	c.expect("USER nobody", "+OK")
	c.expect("PASS x", "-ERR [AUTH]")
	second := dial()
	defer second.Close()
	second.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(second)
	if string(got) != Busy(true) {
		t.Fatalf("refused client got %q", got)
	}
	c.expect("QUIT", "+OK")
	if !strings.Contains(logs.String(), "client=192.0.2.7") {
		t.Fatalf("PROXY source not in the log:\n%s", logs.String())
	}
}

// The metrics count what happened, with bounded labels.
func TestMetrics(t *testing.T) {
	mb := newFakeMailbox(fuzzBodies...)
	cfg := DefaultConfig()
	cfg.InsecureAuth = true
	cfg.AuthFailureDelay = 0
	srv := NewServer(cfg, fakeAuth{}, fakeRouter{&pool.Backend{Name: "fake", Client: mb}}, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.Collectors()...)
	var out bytes.Buffer
	script := "USER u\r\nPASS bad\r\nUSER u\r\nPASS p\r\nRETR 1\r\nRETR 2\r\nTOP 3 0\r\nDELE 1\r\nBOGUS\r\nQUIT\r\n"
	newSession(srv, &scriptConn{r: strings.NewReader(script), w: &out}).serve()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			key := mf.GetName()
			for _, l := range m.Label {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				got[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				got[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				got[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"mailcluster_pop3_logins_total,result=bad-credentials":                 1,
		"mailcluster_pop3_logins_total,result=ok":                              1,
		"mailcluster_pop3_command_duration_seconds,command=RETR,result=ok":     2,
		"mailcluster_pop3_command_duration_seconds,command=PASS,result=err":    1,
		"mailcluster_pop3_command_duration_seconds,command=invalid,result=err": 1,
		"mailcluster_pop3_read_ahead_total,result=hit":                         2,
		"mailcluster_pop3_expunged_messages_total":                             1,
		"mailcluster_pop3_retrieved_bytes_total":                               float64(len(fuzzBodies[0]) + len(fuzzBodies[1]) + len("Subject: three\r\n\r\n")),
		"mailcluster_pop3_sessions":                                            0,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	if t.Failed() {
		t.Logf("all: %v\noutput:\n%s", got, out.String())
	}
}

// testutilGauge reads the open-sessions gauge of srv.
func testutilGauge(t testing.TB, srv *Server) float64 {
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.metrics.sessions)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		t.Fatal(mfs, err)
	}
	return mfs[0].Metric[0].Gauge.GetValue()
}

// A maildrop larger than pop3-max-messages offers its newest messages (a
// client that leaves mail on the server still sees new mail); once the
// client has deleted them, the next session offers the next newest.
func TestMaxMessages(t *testing.T) {
	s := newStack(t, stackOptions{mod: func(c *Config) { c.MaxMessages = 3 }})
	acct := s.user("hugo")
	var msgs []string
	for i := 1; i <= 5; i++ {
		msgs = append(msgs, msg(fmt.Sprint("m", i), "body"))
	}
	s.deliver(acct, msgs...)
	c := s.login("hugo")
	size := len(msgs[2]) + len(msgs[3]) + len(msgs[4])
	c.expect("STAT", fmt.Sprintf("+OK 3 %d", size))
	c.expect("LIST", "+OK")
	if l := c.lines(); len(l) != 3 {
		t.Fatalf("LIST: %q", l)
	}
	c.expect("RETR 4", "-ERR")
	for i := 1; i <= 3; i++ {
		c.expect(fmt.Sprintf("RETR %d", i), "+OK")
		if got := string(c.body()); !strings.Contains(got, fmt.Sprintf("Subject: m%d\r\n", i+2)) {
			t.Fatalf("RETR %d: %q", i, got)
		}
		c.expect(fmt.Sprintf("DELE %d", i), "+OK")
	}
	c.expect("QUIT", "+OK")
	c = s.login("hugo")
	c.expect("STAT", fmt.Sprintf("+OK 2 %d", len(msgs[0])+len(msgs[1])))
	c.expect("RETR 1", "+OK")
	if got := string(c.body()); !strings.Contains(got, "Subject: m1\r\n") {
		t.Fatalf("RETR 1 of the second session: %q", got)
	}
	c.expect("QUIT", "+OK")
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.srv.metrics.limited)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].Metric[0].Counter.GetValue() != 1 {
		t.Errorf("limited maildrops: %v %v, want a count of 1", mfs, err)
	}
}

// With twice -pop3-max-messages or more in the maildrop, the list is cut
// while it is read (the in-loop trim), and the newest are still offered.
func TestMaxMessagesTrimsWhileReading(t *testing.T) {
	s := newStack(t, stackOptions{mod: func(c *Config) { c.MaxMessages = 3 }})
	acct := s.user("hanna")
	var msgs []string
	for i := 1; i <= 8; i++ {
		msgs = append(msgs, msg(fmt.Sprint("m", i), "body"))
	}
	s.deliver(acct, msgs...)
	c := s.login("hanna")
	c.expect("STAT", fmt.Sprintf("+OK 3 %d", len(msgs[5])+len(msgs[6])+len(msgs[7])))
	for i := 1; i <= 3; i++ {
		c.expect(fmt.Sprintf("RETR %d", i), "+OK")
		if got := string(c.body()); !strings.Contains(got, fmt.Sprintf("Subject: m%d\r\n", i+5)) {
			t.Fatalf("RETR %d: %q", i, got)
		}
	}
	c.expect("RETR 4", "-ERR")
	c.expect("QUIT", "+OK")
}
