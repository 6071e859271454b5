package imap

import (
	"strings"
	"testing"
	"time"
)

func TestHostileInput(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("gina")
	deliver(t, st.clients[0], id, testMessage(1))
	_, addr := st.frontend(func(c *Config) { c.MaxAppendSize = 1 << 20 }, 0)

	r := dialRaw(t, addr)
	// A literal too big for LOGIN gets no continuation and is never read.
	// (imapserver answers only once the next line arrives: it looks for
	// the rest of the command there.)
	r.send("a0 LOGIN {4294967295}\r\n\r\n")
	if l := r.expect("a0 "); !strings.HasPrefix(l, "a0 NO") && !strings.HasPrefix(l, "a0 BAD") {
		t.Fatalf("LOGIN huge literal: %q", l)
	}
	r.send("a1 LOGIN gina secret\r\n")
	r.expect("a1 OK")

	// APPEND of 4 GiB: refused before the continuation, nothing read.
	r.send("a2 APPEND INBOX {4294967295}\r\n")
	if l := r.expect("a2 "); !strings.HasPrefix(l, "a2 NO [TOOBIG]") {
		t.Fatalf("APPEND huge literal: %q", l)
	}
	r.send("a3 APPEND INBOX {2097152}\r\n")
	if l := r.expect("a3 "); !strings.HasPrefix(l, "a3 NO [TOOBIG]") {
		t.Fatalf("APPEND over the limit: %q", l)
	}
	r.send("a4 APPEND INBOX {99999999999999999999999}\r\n")
	l := r.expect("a4 ")
	t.Logf("overflowing literal size: %q", l)
	if !strings.HasPrefix(l, "a4 NO") && !strings.HasPrefix(l, "a4 BAD") {
		t.Fatalf("APPEND overflowing literal: %q", l)
	}

	r.send("a5 SELECT INBOX\r\n")
	r.expect("a5 OK")
	// Deep SEARCH nesting: a clear NO [LIMIT], and the session goes on.
	r.send("a6 SEARCH " + strings.Repeat("NOT ", 100) + "ALL\r\n")
	if l := r.expect("a6 "); !strings.HasPrefix(l, "a6 NO [LIMIT]") {
		t.Fatalf("deep SEARCH: %q", l)
	}
	r.send("a7 SEARCH " + strings.Repeat("OR ALL ", 5000) + "ALL\r\n")
	if l := r.expect("a7 "); !strings.HasPrefix(l, "a7 NO") && !strings.HasPrefix(l, "a7 BAD") {
		t.Fatalf("wide deep SEARCH: %q", l)
	}
	r.send("a8 SEARCH " + strings.Repeat("(", 20000) + "ALL" + strings.Repeat(")", 20000) + "\r\n")
	l = r.expect("a8 ")
	t.Logf("parenthesised SEARCH: %.60q", l)

	// Bad mailbox names.
	for i, name := range []string{`"a/../b"`, `"a*"`, `"50%"`, `"&Jjo"`, `"&AGEAYgBj-"`, `"` + strings.Repeat("x", 4000) + `"`, `""`} {
		tag := "n" + string(rune('0'+i))
		r.send(tag + " CREATE " + name + "\r\n")
		l := r.expect(tag + " ")
		if !strings.HasPrefix(l, tag+" NO") && !strings.HasPrefix(l, tag+" BAD") {
			t.Errorf("CREATE %.40s: %q", name, l)
		}
		if strings.Contains(strings.ToLower(l), "utf7") || strings.Contains(l, "imapwire") || strings.Contains(l, "rpc error") {
			t.Errorf("CREATE %.40s leaks internal text: %q", name, l)
		}
	}
	r.send("z NOOP\r\n")
	r.expect("z OK")
	// A line longer than the command limit (50 KiB) gets BAD, and the
	// connection is closed: the rest of the line cannot be trusted.
	r.send("y NOOP " + strings.Repeat("x", 100000) + "\r\nz NOOP\r\n")
	if l := r.line(); !strings.HasPrefix(l, "y BAD") {
		t.Fatalf("over-long line: %q", l)
	}
	buf := make([]byte, 1024)
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.conn.Read(buf); err == nil {
		t.Fatalf("connection open after an over-long line: %q", buf[:n])
	}

	// Unknown command before authentication: BYE (cross-protocol attacks).
	r = dialRaw(t, addr)
	r.send("GET / HTTP/1.1\r\n")
	if l := r.line(); !strings.HasPrefix(l, "* BYE") && !strings.HasPrefix(l, "GET BAD") {
		t.Fatalf("HTTP request: %q", l)
	}

	// Commands before authentication are refused.
	r = dialRaw(t, addr)
	r.send("b1 SELECT INBOX\r\n")
	if l := r.expect("b1 "); !strings.HasPrefix(l, "b1 BAD") && !strings.HasPrefix(l, "b1 NO") {
		t.Fatalf("SELECT before LOGIN: %q", l)
	}

	// Repeated failed logins close the connection.
	r = dialRaw(t, addr)
	for i := 1; i < DefaultConfig().MaxAuthFailures; i++ {
		r.send("c LOGIN gina wrong\r\n")
		if l := r.expect("c "); !strings.HasPrefix(l, "c NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("bad password: %q", l)
		}
	}
	r.send("c LOGIN gina wrong\r\n")
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("last failure: %q", l)
	}
	r.send("d NOOP\r\n")
	buf = make([]byte, 100)
	if n, err := r.conn.Read(buf); err == nil {
		t.Fatalf("connection open after %d failures: %q", DefaultConfig().MaxAuthFailures, buf[:n])
	}
}

// Names that cannot exist are NONEXISTENT for the commands that look
// mailboxes up.
func TestLookupOfImpossibleNames(t *testing.T) {
	r := rawSelected(t, "vera", testMessage(1))
	r.send("c COPY 1 \"a/../b\"\r\n")
	if l := r.expect("c "); !strings.HasPrefix(l, "c NO [TRYCREATE]") {
		t.Errorf("COPY to an impossible name: %q", l)
	}
	for i, cmd := range []string{`SELECT "a/../b"`, `STATUS "x//y" (MESSAGES)`, `EXAMINE "INBOX/"`, `DELETE "%"`} {
		tag := "t" + itoa(i)
		r.send(tag + " " + cmd + "\r\n")
		if l := r.expect(tag + " "); !strings.HasPrefix(l, tag+" NO [NONEXISTENT]") {
			t.Errorf("%s: %q", cmd, l)
		}
	}
}
