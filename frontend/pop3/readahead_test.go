package pop3

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"mailcluster/frontend/pool"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// countingMailbox counts the body calls made to a fakeMailbox.
type countingMailbox struct {
	*fakeMailbox
	getBody, getBodies, batched atomic.Int64
}

func (c *countingMailbox) GetBody(ctx context.Context, r *mailboxv1.GetBodyRequest, o ...grpc.CallOption) (grpc.ServerStreamingClient[mailboxv1.BodyChunk], error) {
	c.getBody.Add(1)
	return c.fakeMailbox.GetBody(ctx, r, o...)
}

func (c *countingMailbox) GetBodies(ctx context.Context, r *mailboxv1.GetBodiesRequest, o ...grpc.CallOption) (grpc.ServerStreamingClient[mailboxv1.BodyChunk], error) {
	c.getBodies.Add(1)
	c.batched.Add(int64(len(r.Uids)))
	return c.fakeMailbox.GetBodies(ctx, r, o...)
}

// A client that retrieves its maildrop in order costs a GetBodies call per
// half window, each message read once.
func TestReadAheadBatches(t *testing.T) {
	var bodies []string
	for i := 0; i < 40; i++ {
		bodies = append(bodies, fmt.Sprintf("Subject: %d\r\n\r\n%s\r\n", i, strings.Repeat(".x", i)))
	}
	mb := &countingMailbox{fakeMailbox: newFakeMailbox(bodies...)}
	cfg := DefaultConfig()
	cfg.InsecureAuth = true
	cfg.ReadAhead = 8
	srv := NewServer(cfg, fakeAuth{}, fakeRouter{&pool.Backend{Name: "fake", Client: mb}}, nil)
	var script strings.Builder
	script.WriteString("USER u\r\nPASS p\r\n")
	for i := 1; i <= len(bodies); i++ {
		fmt.Fprintf(&script, "RETR %d\r\n", i)
	}
	script.WriteString("QUIT\r\n")
	var out bytes.Buffer
	newSession(srv, &scriptConn{r: strings.NewReader(script.String()), w: &out}).serve()
	var want bytes.Buffer
	for _, b := range bodies {
		want.Write(wantOnWire([]byte(b)))
		want.WriteString(".\r\n")
	}
	got := out.String()
	got = got[strings.Index(got, "\r\n+OK Logged in")+2:]
	var bodiesOut bytes.Buffer
	for _, l := range strings.SplitAfter(got, "\r\n")[1:] {
		switch {
		case strings.HasPrefix(l, "+OK"):
		case strings.HasPrefix(l, "..") || (strings.HasPrefix(l, ".") && l != ".\r\n"):
			bodiesOut.WriteString(l[1:]) // unstuffed
		default:
			bodiesOut.WriteString(l)
		}
	}
	if !bytes.Equal(bodiesOut.Bytes(), want.Bytes()) {
		t.Fatalf("bodies differ:\n%s", out.String())
	}
	if g, b, n := mb.getBody.Load(), mb.getBodies.Load(), mb.batched.Load(); g != 0 || n != 40 || b > 10 {
		t.Fatalf("%d GetBody, %d GetBodies of %d messages; want no GetBody and at most 10 calls for the 40", g, b, n)
	}
	if n := srv.aheadUsed.Load(); n != 0 {
		t.Fatalf("read-ahead budget not released: %d bytes", n)
	}
}

// A message expunged by another session after login, inside a read-ahead
// batch: the RETR answers as without read-ahead, the others are sent
// byte-exact.
func TestReadAheadGone(t *testing.T) {
	s := newStack(t, stackOptions{mod: func(c *Config) { c.ReadAhead = 8 }})
	acct := s.user("erin")
	var msgs []string
	for i := 1; i <= 5; i++ {
		msgs = append(msgs, msg(fmt.Sprint("m", i), ".dot", strings.Repeat("y", 100*i)))
	}
	s.deliver(acct, msgs...)
	a, b := s.login("erin"), s.login("erin")
	a.expect("DELE 3", "+OK")
	a.expect("QUIT", "+OK Logging out.")
	for i := 1; i <= 5; i++ {
		if i == 3 {
			b.expect("RETR 3", "-ERR Message was removed by another session.")
			continue
		}
		b.expect(fmt.Sprintf("RETR %d", i), fmt.Sprintf("+OK %d octets", len(msgs[i-1])))
		if got, want := b.body(), wantOnWire([]byte(msgs[i-1])); !bytes.Equal(got, want) {
			t.Fatalf("RETR %d: got %q, want %q", i, trunc(got), trunc(want))
		}
	}
	b.expect("QUIT", "+OK Logging out.")
	if hit, miss := aheadCount(t, s.srv, "hit"), aheadCount(t, s.srv, "miss"); hit != 4 || miss != 1 {
		t.Fatalf("read-ahead hits %v, misses %v; want 4 and 1", hit, miss)
	}
}

// aheadCount reads the read-ahead counter of srv for result.
func aheadCount(t testing.TB, srv *Server, result string) float64 {
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.metrics.ahead)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.Counter.GetValue()
				}
			}
		}
	}
	return 0
}

// One session reads ahead at most a sixteenth of the server's budget (or
// one largest message): here 1 MiB of 400 KB messages, not the window's 32.
func TestReadAheadSessionLimit(t *testing.T) {
	s := newStack(t, stackOptions{mod: func(c *Config) { c.ReadAhead = 32; c.ReadAheadMemory = 4 << 20 }})
	acct := s.user("ivan")
	var msgs []string
	for i := 1; i <= 5; i++ {
		msgs = append(msgs, msg(fmt.Sprint("m", i), strings.Repeat("z", 400<<10)))
	}
	s.deliver(acct, msgs...)
	c := s.login("ivan")
	c.expect("RETR 1", "+OK")
	c.body()
	if used := s.srv.aheadUsed.Load(); used > 1<<20 {
		t.Errorf("%d bytes read ahead after RETR 1, want at most 1 MiB", used)
	}
	for i := 2; i <= 5; i++ {
		c.expect(fmt.Sprintf("RETR %d", i), "+OK")
		if got, want := c.body(), wantOnWire([]byte(msgs[i-1])); !bytes.Equal(got, want) {
			t.Fatalf("RETR %d: %d octets, want %d", i, len(got), len(want))
		}
	}
	c.expect("QUIT", "+OK")

	// A client that skips ahead, or deletes what was read ahead, does not
	// pile up bodies beyond the session's share.
	msgs = msgs[:0]
	for i := 1; i <= 40; i++ {
		msgs = append(msgs, msg(fmt.Sprint("n", i), strings.Repeat("y", 200<<10)))
	}
	s.deliver(acct, msgs...)
	c = s.login("ivan")
	for i := 1; i <= 40; i += 4 {
		if i%8 == 5 {
			for d := i - 3; d < i; d++ {
				c.expect(fmt.Sprintf("DELE %d", d), "+OK")
			}
		}
		c.expect(fmt.Sprintf("RETR %d", i), "+OK")
		c.body()
		if used := s.srv.aheadUsed.Load(); used > 1<<20 {
			t.Fatalf("%d bytes read ahead after RETR %d, skipping and deleting, want at most 1 MiB", used, i)
		}
	}
	c.expect("QUIT", "+OK")
}
