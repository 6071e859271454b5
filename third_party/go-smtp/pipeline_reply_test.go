package smtp_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// mailcluster: replies to pipelined MAIL and RCPT commands are held until
// the reply to DATA and leave in one write (RFC 2920); a
// client that waits for each reply still gets each one at once, and an
// error reply is never held.

// writeCounter counts the writes made to the connections it accepts.
type writeCounter struct {
	net.Listener
	writes atomic.Int64
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, n: &l.writes}, nil
}

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Write(b []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(b)
}

func pipelineServer(t *testing.T) (*backend, *writeCounter, net.Conn, *bufio.Reader) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wc := &writeCounter{Listener: l}
	be := new(backend)
	s := smtp.NewServer(be)
	s.Domain = "localhost"
	s.AllowInsecureAuth = true
	go s.Serve(wc)
	t.Cleanup(func() { s.Close() })
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A reply held by mistake makes a read below time out, not hang.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	readReplies(t, r, "220 ")
	return be, wc, c, r
}

// readReplies reads one reply line per prefix and checks each.
func readReplies(t *testing.T, r *bufio.Reader, prefixes ...string) {
	t.Helper()
	for _, p := range prefixes {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for %q: %v", p, err)
		}
		if !strings.HasPrefix(line, p) {
			t.Fatalf("reply %q, want %q", line, p)
		}
	}
}

func TestPipelinedRepliesLeaveTogether(t *testing.T) {
	be, wc, c, r := pipelineServer(t)
	before := wc.writes.Load()
	io.WriteString(c, "EHLO localhost\r\n")
	line, _ := r.ReadString('\n')
	for strings.HasPrefix(line, "250-") {
		line, _ = r.ReadString('\n')
	}
	if !strings.HasPrefix(line, "250 ") {
		t.Fatalf("EHLO ended with %q", line)
	}
	if n := wc.writes.Load() - before; n != 1 {
		t.Errorf("the EHLO reply took %d writes, want 1", n)
	}

	for i := 0; i < 3; i++ {
		before = wc.writes.Load()
		io.WriteString(c, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n")
		readReplies(t, r, "250 ", "250 ", "250 ", "354 ")
		if n := wc.writes.Load() - before; n != 1 {
			t.Errorf("the replies to a pipelined MAIL, RCPT, RCPT, DATA took %d writes, want 1", n)
		}
		io.WriteString(c, "Subject: x\r\n\r\nbody\r\n.\r\n")
		readReplies(t, r, "250 ")
	}

	// An error reply goes out at once, with the replies held before it.
	before = wc.writes.Load()
	io.WriteString(c, "MAIL FROM:<a@example.org>\r\nXYZZY\r\nRCPT TO:<c@example.org>\r\nRSET\r\nNOOP\r\n")
	readReplies(t, r, "250 ", "501 ", "250 ", "250 ", "250 ")
	if n := wc.writes.Load() - before; n != 2 {
		t.Errorf("the replies around a pipelined error took %d writes, want 2", n)
	}

	// An error reply to a command whose reply could be held is not held.
	be.userErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	before = wc.writes.Load()
	io.WriteString(c, "MAIL FROM:<a@example.org>\r\nNOOP\r\n")
	readReplies(t, r, "451 ", "250 ")
	if n := wc.writes.Load() - before; n != 2 {
		t.Errorf("a refused pipelined MAIL and a NOOP took %d writes, want 2", n)
	}
	be.userErr = nil

	// BDAT: the held replies go out before the server waits for the chunk.
	io.WriteString(c, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nBDAT 25 LAST\r\n")
	readReplies(t, r, "250 ", "250 ")
	io.WriteString(c, "Subject: x\r\n\r\nbody bdat\r\n")
	readReplies(t, r, "250 ")
}

func TestRepliesNotHeldWithoutPipelining(t *testing.T) {
	_, _, c, r := pipelineServer(t)
	for _, step := range []struct{ cmd, reply string }{
		{"HELO localhost", "250 "},
		{"MAIL FROM:<a@example.org>", "250 "},
		{"RCPT TO:<b@example.org>", "250 "},
		{"RSET", "250 "},
		{"MAIL FROM:<a@example.org>", "250 "},
		{"RCPT TO:<b@example.org>", "250 "},
		{"DATA", "354 "},
	} {
		io.WriteString(c, step.cmd+"\r\n")
		readReplies(t, r, step.reply)
	}
	// Half a command line after a whole one: the whole one's reply is not
	// held for a line that has not arrived.
	io.WriteString(c, "Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@example.org>\r\nRC")
	readReplies(t, r, "250 ", "250 ")
	io.WriteString(c, "PT TO:<b@example.org>\r\n")
	readReplies(t, r, "250 ")
}
