package imap

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestQResync(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("quentin")
	for i := 0; i < 6; i++ {
		deliver(t, st.clients[0], id, testMessage(i))
	}
	_, addr := st.frontend(nil, 0)

	enable := func(r *raw) {
		t.Helper()
		r.send("a LOGIN quentin secret\r\nb ENABLE QRESYNC\r\n")
		r.expect("a OK")
		if l := r.line(); l != "* ENABLED QRESYNC" {
			t.Fatalf("ENABLE QRESYNC: %q", l)
		}
		r.expect("b OK")
	}
	r := dialRaw(t, addr)
	enable(r)
	r.send("c SELECT INBOX\r\n")
	out := r.until("c")
	uv := regexp.MustCompile(`UIDVALIDITY (\d+)`).FindStringSubmatch(out)[1]
	h0 := regexp.MustCompile(`HIGHESTMODSEQ (\d+)`).FindStringSubmatch(out)[1]

	// A second QRESYNC session and a plain one, both selected.
	r2 := dialRaw(t, addr)
	enable(r2)
	r2.send("c SELECT INBOX\r\n")
	r2.until("c")
	r3 := dialRaw(t, addr)
	r3.send("a LOGIN quentin secret\r\nb SELECT INBOX\r\n")
	r3.expect("a OK")
	r3.until("b")

	// Changes: 2 seen, 3 expunged. With QRESYNC the expunge is VANISHED.
	r.send("d STORE 2 +FLAGS (\\Seen)\r\ne STORE 3 +FLAGS.SILENT (\\Deleted)\r\nf EXPUNGE\r\n")
	r.until("d")
	r.until("e")
	if out := r.until("f"); !strings.Contains(out, "* VANISHED 3\n") || strings.Contains(out, "EXPUNGE\n") {
		t.Errorf("EXPUNGE with QRESYNC:\n%s", out)
	}
	r2.send("g NOOP\r\n")
	if out := r2.until("g"); !strings.Contains(out, "* VANISHED 3\n") || strings.Contains(out, " EXPUNGE\n") {
		t.Errorf("unsolicited expunge with QRESYNC:\n%s", out)
	}
	r3.send("g NOOP\r\n")
	if out := r3.until("g"); !strings.Contains(out, "* 3 EXPUNGE\n") || strings.Contains(out, "VANISHED") {
		t.Errorf("unsolicited expunge without QRESYNC:\n%s", out)
	}

	// A reconnecting client resynchronises in SELECT.
	r4 := dialRaw(t, addr)
	enable(r4)
	r4.send(fmt.Sprintf("c SELECT INBOX (QRESYNC (%s %s))\r\n", uv, h0))
	out = r4.until("c")
	if !strings.Contains(out, "* VANISHED (EARLIER) 3\n") ||
		!regexp.MustCompile(`\* 2 FETCH \(UID 2 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)`).MatchString(out) ||
		len(fetches(out, true)) != 1 || !strings.Contains(out, "c OK [READ-WRITE]") {
		// uid 3's \Deleted change is gone with it; uid 2 and nothing else
		// changed besides.
		t.Errorf("SELECT (QRESYNC):\n%s", out)
	}
	// Known UIDs limit VANISHED; a stale UIDVALIDITY gets nothing extra
	// (the client must resynchronise fully).
	r4.send(fmt.Sprintf("d EXAMINE INBOX (QRESYNC (%s %s 1:2,4:6))\r\n", uv, h0))
	out = r4.until("d")
	if strings.Contains(out, "VANISHED") || !strings.Contains(out, "[CLOSED]") || !strings.Contains(out, "* 2 FETCH (UID 2 ") {
		t.Errorf("EXAMINE (QRESYNC) with known UIDs:\n%s", out)
	}
	r4.send(fmt.Sprintf("e SELECT INBOX (QRESYNC (%s1 %s))\r\n", uv, h0))
	out = r4.until("e")
	if strings.Contains(out, "VANISHED") || strings.Contains(out, "FETCH") || !strings.Contains(out, "e OK") {
		t.Errorf("SELECT (QRESYNC) with another UIDVALIDITY:\n%s", out)
	}
	// UID FETCH (CHANGEDSINCE VANISHED).
	r4.send(fmt.Sprintf("f UID FETCH 1:* (FLAGS) (CHANGEDSINCE %s VANISHED)\r\n", h0))
	out = r4.until("f")
	if !strings.HasPrefix(out, "* VANISHED (EARLIER) 3\n") || len(fetches(out, true)) != 1 {
		t.Errorf("UID FETCH (CHANGEDSINCE VANISHED):\n%s", out)
	}
	r4.send(fmt.Sprintf("g UID FETCH 4:* (FLAGS) (CHANGEDSINCE %s VANISHED)\r\n", h0))
	if out = r4.until("g"); strings.Contains(out, "VANISHED") {
		t.Errorf("UID FETCH 4:* (CHANGEDSINCE VANISHED):\n%s", out)
	}

	// Refused: QRESYNC parameters without ENABLE QRESYNC, VANISHED without
	// UID FETCH or CHANGEDSINCE, malformed parameters.
	for i, cmd := range []string{
		fmt.Sprintf("FETCH 1:* (FLAGS) (CHANGEDSINCE %s VANISHED)", h0),
		"UID FETCH 1:* (FLAGS) (VANISHED)",
		fmt.Sprintf("SELECT INBOX (QRESYNC (%s))", uv),
		"SELECT INBOX (QRESYNC (0 1))",
		fmt.Sprintf("SELECT INBOX (QRESYNC (%s 1 1:2 1:2))", uv),
	} {
		tag := fmt.Sprintf("x%d", i)
		r4.send(tag + " " + cmd + "\r\n")
		if l := r4.expect(tag + " "); !strings.HasPrefix(l, tag+" BAD") {
			t.Errorf("%s: %q", cmd, l)
		}
	}
	r3.send(fmt.Sprintf("h SELECT INBOX (QRESYNC (%s %s))\r\n", uv, h0))
	if l := r3.expect("h "); !strings.HasPrefix(l, "h BAD") {
		t.Errorf("QRESYNC without ENABLE: %q", l)
	}
}
