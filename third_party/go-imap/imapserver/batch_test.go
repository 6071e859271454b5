package imapserver_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// manySession answers FETCH with one response per number in the set.
type manySession struct {
	imapserver.Session
}

func (s *manySession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	seq := numSet.(imap.SeqSet)
	nums, _ := seq.Nums()
	for _, n := range nums {
		rw := w.CreateMessage(n)
		rw.WriteUID(imap.UID(n))
		rw.WriteFlags([]imap.Flag{imap.FlagSeen})
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return countingConn{c, l.writes}, err
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// The responses of one FETCH leave in full 64 KiB buffers, not one write each,
// and all of them arrive, in order, before the tagged OK.
func TestFetchResponsesBatched(t *testing.T) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("u", "p")
	user.Create("INBOX", nil)
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &manySession{Session: mem.NewSession()}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	go srv.Serve(countingListener{l, &writes})
	t.Cleanup(func() { srv.Close() })

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	line := func() string {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		s, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimRight(s, "\r\n")
	}
	line()
	fmt.Fprintf(c, "a LOGIN u p\r\nb SELECT INBOX\r\n")
	for !strings.HasPrefix(line(), "b ") {
	}
	const n = 5000
	before := writes.Load()
	fmt.Fprintf(c, "c FETCH 1:%d (UID FLAGS)\r\n", n)
	for i := 1; i <= n; i++ {
		want := fmt.Sprintf("* %d FETCH (UID %d FLAGS (\\Seen))", i, i)
		if got := line(); got != want {
			t.Fatalf("response %d: %q, want %q", i, got, want)
		}
	}
	if got := line(); !strings.HasPrefix(got, "c OK") {
		t.Fatalf("tagged: %q", got)
	}
	// 5,000 responses of about 40 bytes are 200 KB: a few 64 KiB batch
	// buffers (50 of the connection's own 4 KiB), where one write per
	// response would be 5,001 writes.
	if w := writes.Load() - before; w > 8 {
		t.Errorf("%d writes for %d FETCH responses", w, n)
	}
}

// failOnceConn fails one write, the fail-th from the start of the
// connection's counting (set by the test), without writing anything, as a
// write deadline that expires does; later writes go through.
type failOnceConn struct {
	net.Conn
	writes, fail *atomic.Int64
}

func (c failOnceConn) Write(b []byte) (int, error) {
	if n := c.writes.Add(1); n == c.fail.Load() {
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: fmt.Errorf("i/o timeout")}
	}
	return c.Conn.Write(b)
}

type failOnceListener struct {
	net.Listener
	writes, fail *atomic.Int64
}

func (l failOnceListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return failOnceConn{c, l.writes, l.fail}, err
}

// After a write of a FETCH batch fails, nothing more is written on the
// connection and it is closed: the client never sees a tagged response
// after responses cut short.
func TestFetchBatchWriteErrorEndsOutput(t *testing.T) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("u", "p")
	user.Create("INBOX", nil)
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &manySession{Session: mem.NewSession()}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var writes, fail atomic.Int64
	go srv.Serve(failOnceListener{l, &writes, &fail})
	t.Cleanup(func() { srv.Close() })

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	line := func() (string, error) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		s, err := br.ReadString('\n')
		return strings.TrimRight(s, "\r\n"), err
	}
	line()
	fmt.Fprintf(c, "a LOGIN u p\r\nb SELECT INBOX\r\n")
	for {
		s, err := line()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(s, "b ") {
			break
		}
	}
	fail.Store(writes.Load() + 2) // the second buffer of the FETCH
	fmt.Fprintf(c, "c FETCH 1:20000 (UID FLAGS)\r\n")
	n := 0
	for {
		s, err := line()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("after %d responses and a failed write the server neither answered nor closed", n)
			}
			break // the server closed the connection
		}
		if strings.HasPrefix(s, "c ") {
			t.Fatalf("after %d responses and a failed write: %q", n, s)
		}
		n++
	}
	if n >= 20000 {
		t.Fatalf("all %d responses arrived; the write did not fail", n)
	}
}
