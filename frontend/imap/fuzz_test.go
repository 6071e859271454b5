package imap

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// panicCounter counts log records that report a panic, on top of h.
type panicCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (p panicCounter) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.n.Add(1)
	}
	return p.Handler.Handle(ctx, r)
}

func (p panicCounter) Enabled(context.Context, slog.Level) bool { return true }

// FuzzSession drives a logged-in, selected session with arbitrary command
// text against the real stack: the server must neither panic nor leak
// internal error text, and must still answer (or have closed the
// connection).
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"a FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (Subject)]<0.10>)\r\n",
		"a UID FETCH *:1 (BODY[1.MIME] BODY[TEXT]<5.3> RFC822.SIZE INTERNALDATE)\r\n",
		"a STORE 1 +FLAGS.SILENT (\\Deleted $x)\r\na EXPUNGE\r\n",
		"a SEARCH OR (FROM x) (NOT SEEN) LARGER 3 UID 1:* SINCE 1-Jan-2020\r\n",
		"a SEARCH RETURN (SAVE) ALL\r\nb FETCH $ (UID)\r\n",
		"a COPY 1 \"&Jjo-\"\r\nb MOVE 1:* Trash\r\n",
		"a APPEND INBOX (\\Seen) {5}\r\nhello\r\n",
		"a LIST \"\" \"*\" RETURN (STATUS (MESSAGES SIZE))\r\n",
		"a STATUS INBOX (MESSAGES UIDNEXT UNSEEN DELETED SIZE APPENDLIMIT)\r\n",
		"a IDLE\r\nDONE\r\n",
		"a ENABLE IMAP4rev2\r\nb SEARCH ALL\r\n",
		"a FETCH 4294967295 BODY[]\r\n",
		"a CREATE a/b/c\r\nb RENAME a x/y\r\nc DELETE x/y/b/c\r\n",
		"a UID STORE 1:* FLAGS ()\r\n",
		"a SELECT {3}\r\n",
		"a ID (\"name\" \"x\" \"version\" NIL)\r\nb ID NIL\r\n",
		"a GETQUOTAROOT INBOX\r\nb GETQUOTA \"\"\r\n",
		"a SELECT INBOX (CONDSTORE)\r\nb FETCH 1:* (FLAGS) (CHANGEDSINCE 1)\r\n",
		"a STORE 1 (UNCHANGEDSINCE 1) +FLAGS.SILENT (\\Seen)\r\nb SEARCH MODSEQ \"/flags/\\\\seen\" all 1\r\n",
		"a ENABLE CONDSTORE\r\nb STATUS INBOX (HIGHESTMODSEQ)\r\nc UID FETCH 1:* (MODSEQ)\r\n",
		"a ENABLE QRESYNC\r\nb SELECT INBOX (QRESYNC (1 1 1:4294967295 (1:* 1:*)))\r\nc UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n",
	} {
		f.Add(s)
	}
	var panics atomic.Int64
	st := newStack(f, 1)
	st.log = slog.New(panicCounter{Handler: slog.DiscardHandler, n: &panics})
	id := st.user("fuzz")
	deliver(f, st.clients[0], id, []byte("Subject: fuzz\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b--\r\n"))
	_, addr := st.frontend(nil, 0)

	f.Fuzz(func(t *testing.T, script string) {
		if len(script) > 8192 {
			return
		}
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := &raw{t: t, conn: conn}
		r.expect("* OK")
		r.send("l LOGIN fuzz secret\r\ns SELECT INBOX\r\n")
		r.expect("l OK")
		r.expect("s OK")
		r.send(script + "\r\nzz NOOP\r\n")
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, 64<<10)
		var out []byte
		for !strings.Contains(string(out), "\r\nzz ") {
			n, err := conn.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // waiting for a literal the script announced
				}
				break // closed
			}
		}
		for _, bad := range []string{"rpc error", "desc =", "imapwire", "utf7:", "goroutine"} {
			if strings.Contains(string(out), bad) {
				t.Fatalf("response leaks %q: %q", bad, out)
			}
		}
		if n := panics.Load(); n > 0 {
			t.Fatalf("%d panics", n)
		}
	})
}
