package imap

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// FETCH ENVELOPE sends the form rendered when the message was stored, and
// a message stored before envelopes had one (its imap field empty) gets
// the same bytes, encoded from the parsed fields.
func TestEnvelopeStoredAndRendered(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("envuser")
	msg := []byte("Date: Tue, 24 Nov 2026 10:15:00 +0100\r\nFrom: =?utf-8?q?Zo=C3=AB?= <zoe@example.test>\r\n" +
		"To: team: a@example.test, \"B \\\"b\\\"\" <b@example.test>;\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= \"x\"\r\n" +
		"Message-ID: <m1@example.test>\r\nIn-Reply-To: <p@example.test>\r\n\r\nbody\r\n")
	deliver(t, st.clients[0], id, msg)
	deliver(t, st.clients[0], id, msg)

	// Make the second one look like a message stored before: drop the
	// imap field from its stored envelope.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, st.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var stored []byte
	if err := conn.QueryRow(ctx, "SELECT envelope FROM messages WHERE account_id=$1 AND uid=2", id).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	var env mailboxv1.Envelope
	if err := proto.Unmarshal(stored, &env); err != nil {
		t.Fatal(err)
	}
	if len(env.Imap) == 0 {
		t.Fatal("a delivered message's envelope has no IMAP form")
	}
	env.Imap = nil
	old, _ := proto.Marshal(&env)
	if _, err := conn.Exec(ctx, "UPDATE messages SET envelope=$2 WHERE account_id=$1 AND uid=2", id, old); err != nil {
		t.Fatal(err)
	}

	_, addr := st.frontend(nil, 0)
	r := dialRaw(t, addr)
	r.send("a LOGIN envuser secret\r\n")
	r.expect("a OK")
	r.send("b SELECT INBOX\r\n")
	r.until("b")
	r.send("c FETCH 1:2 ENVELOPE\r\n")
	out := r.until("c")
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "* 1 FETCH (ENVELOPE (") || !strings.HasPrefix(lines[1], "* 2 FETCH (ENVELOPE (") {
		t.Fatalf("FETCH:\n%s", out)
	}
	one, two := strings.TrimPrefix(lines[0], "* 1 FETCH "), strings.TrimPrefix(lines[1], "* 2 FETCH ")
	if one != two {
		t.Errorf("stored form\n%s\nrendered from fields\n%s", one, two)
	}
	want := `(ENVELOPE ("Tue, 24 Nov 2026 10:15:00 +0100" "=?utf-8?q?Gr=C3=BC=C3=9Fe_\"x\"?=" ` +
		`(("=?utf-8?q?Zo=C3=AB?=" NIL "zoe" "example.test"))`
	if !strings.HasPrefix(one, want) || !strings.Contains(one, `((NIL NIL "team" NIL) (NIL NIL "a" "example.test") ("B \"b\"" NIL "b" "example.test") (NIL NIL NIL NIL))`) ||
		!strings.HasSuffix(one, `"<p@example.test>" "<m1@example.test>"))`) {
		t.Errorf("envelope %s", one)
	}
}
