package imap

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// cutClient's GetBody streams half of a body's first chunk and then ends,
// as a backend or S3 failure in the middle of a body does.
type cutClient struct {
	mailboxv1.MailboxClient
}

func (c cutClient) GetBody(ctx context.Context, in *mailboxv1.GetBodyRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[mailboxv1.BodyChunk], error) {
	st, err := c.MailboxClient.GetBody(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	return &cutStream{ServerStreamingClient: st}, nil
}

type cutStream struct {
	grpc.ServerStreamingClient[mailboxv1.BodyChunk]
	sent bool
}

func (s *cutStream) Recv() (*mailboxv1.BodyChunk, error) {
	if s.sent {
		return nil, io.EOF
	}
	ch, err := s.ServerStreamingClient.Recv()
	if err != nil {
		return nil, err
	}
	s.sent = true
	ch.Data = ch.Data[:len(ch.Data)/2]
	return ch, nil
}

// A body that breaks inside its literal ends the connection, and the
// session ends with it (it used to stay blocked on the connection's
// encoder, never closed).
func TestFetchBodyBrokenInLiteral(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("cutuser")
	deliver(t, st.clients[0], id, []byte("Subject: cut\r\n\r\n"+strings.Repeat("body line\r\n", 500)))
	srv, err := New(func() Config { c := DefaultConfig(); c.InsecureAuth = true; return c }(),
		Deps{Auth: st.dir, Router: &testRouter{down: map[int]bool{}, clients: []mailboxv1.MailboxClient{cutClient{st.clients[0]}}}}, st.log)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, srv)
	for _, cmd := range []string{"c FETCH 1 BODY.PEEK[]", "c FETCH 1 (UID BODY.PEEK[])"} {
		r := dialRaw(t, addr)
		r.send("a LOGIN cutuser secret\r\n")
		r.expect("a OK")
		r.send("b SELECT INBOX\r\n")
		r.until("b")
		r.send(cmd + "\r\n")
		r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(r.conn); err != nil {
			t.Fatalf("%s: the connection was not closed: %v", cmd, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			srv.mu.Lock()
			n := len(srv.sessions)
			srv.mu.Unlock()
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d sessions still open after the connection closed", cmd, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// BINARY decodes a part twice, first for its size: a body cut short there
// is a temporary failure before any literal, not a shorter part.
func TestFetchBinaryCutShort(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("cutbin")
	deliver(t, st.clients[0], id, []byte("Subject: cut\r\n\r\n"+strings.Repeat("body line\r\n", 500)))
	srv, err := New(func() Config { c := DefaultConfig(); c.InsecureAuth = true; return c }(),
		Deps{Auth: st.dir, Router: &testRouter{down: map[int]bool{}, clients: []mailboxv1.MailboxClient{cutClient{st.clients[0]}}}}, st.log)
	if err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, serveOn(t, srv))
	r.send("a LOGIN cutbin secret\r\n")
	r.expect("a OK")
	r.send("b SELECT INBOX\r\n")
	r.until("b")
	r.send("c FETCH 1 BINARY.PEEK[1]\r\n")
	if got := r.until("c"); !strings.Contains(got, "c NO") || strings.Contains(got, "BINARY[1]") {
		t.Errorf("BINARY of a body cut short: %q", got)
	}
	r.send("d NOOP\r\n")
	r.expect("d OK")
}
