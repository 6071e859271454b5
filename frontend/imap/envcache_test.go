package imap

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

func testEnvelope(i int) *mailboxv1.Envelope {
	return &mailboxv1.Envelope{Date: "Tue, 24 Nov 2026 10:15:00 +0100", Subject: fmt.Sprintf("Grüße %d", i),
		From: []*mailboxv1.Address{{Name: "Zoë", Mailbox: "zoe", Host: "example.test"}}, MessageId: fmt.Sprintf("<m%d@x>", i)}
}

// The cache gives what imapserver renders, keeps at most its byte limit
// (least recently used out first), and works without a limit too (nil).
func TestEnvelopeCache(t *testing.T) {
	c := newEnvelopeCache(16 * 2000) // 2,000 bytes per shard
	key := func(uid uint32) envelopeKey { return envelopeKey{"acct", 7, 1, uid} }
	for uid := uint32(1); uid <= 400; uid++ {
		e := testEnvelope(int(uid))
		want := imapserver.EncodeEnvelope(envelopeFromProto(e))
		if got := c.wire(key(uid), e); !bytes.Equal(got, want) {
			t.Fatalf("uid %d: %s, want %s", uid, got, want)
		}
	}
	n, size := c.len()
	if size > 16*2000 || n == 0 || n >= 400 {
		t.Fatalf("%d entries, %d bytes after 400 envelopes (limit %d)", n, size, 16*2000)
	}
	// The newest are kept: asking again with a different envelope returns
	// the cached bytes (a UID's envelope never changes).
	if got := c.wire(key(400), testEnvelope(0)); !bytes.Contains(got, []byte("<m400@x>")) {
		t.Errorf("uid 400 not cached: %s", got)
	}
	if got := c.wire(key(1), testEnvelope(0)); !bytes.Contains(got, []byte("<m0@x>")) {
		t.Errorf("uid 1 still cached: %s", got)
	}
	// Another UIDVALIDITY is another message.
	if got := c.wire(envelopeKey{"acct", 7, 2, 400}, testEnvelope(9)); !bytes.Contains(got, []byte("<m9@x>")) {
		t.Errorf("new UIDVALIDITY served the old envelope: %s", got)
	}
	var off *envelopeCache = newEnvelopeCache(0)
	if off != nil || !bytes.Contains(off.wire(key(1), testEnvelope(3)), []byte("<m3@x>")) {
		t.Error("cache off")
	}
	// Concurrent use (run with -race).
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for uid := uint32(1); uid <= 300; uid++ {
				if got := c.wire(key(uid), testEnvelope(int(uid))); !bytes.Contains(got, []byte(fmt.Sprintf("<m%d@x>", uid))) && !bytes.Contains(got, []byte("<m0@x>")) {
					t.Errorf("uid %d: %s", uid, got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// FETCH ENVELOPE gives the same bytes rendered or from the cache, and the
// same as with the cache off.
func TestEnvelopeFetchCached(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("envuser")
	msg := []byte("Date: Tue, 24 Nov 2026 10:15:00 +0100\r\nFrom: =?utf-8?q?Zo=C3=AB?= <zoe@example.test>\r\n" +
		"To: team: a@example.test, \"B \\\"b\\\"\" <b@example.test>;\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= \"x\"\r\n" +
		"Message-ID: <m1@example.test>\r\nIn-Reply-To: <p@example.test>\r\n\r\nbody\r\n")
	deliver(t, st.clients[0], id, msg)
	deliver(t, st.clients[0], id, msg)
	fetch := func(addr string) []string {
		r := dialRaw(t, addr)
		r.send("a LOGIN envuser secret\r\n")
		r.expect("a OK")
		r.send("b SELECT INBOX\r\n")
		r.until("b")
		var out []string
		for i := 0; i < 2; i++ {
			r.send("c FETCH 1:2 ENVELOPE\r\n")
			out = append(out, strings.Split(r.until("c"), "\n")[:2]...)
		}
		return out
	}
	rec := &recordingClient{MailboxClient: st.clients[0]}
	// MessageCache 0: the envelope hints reach the backend only without the message cache.
	srv, err := New(func() Config { c := DefaultConfig(); c.InsecureAuth, c.MessageCache = true, 0; return c }(),
		Deps{Auth: st.dir, Router: &testRouter{down: map[int]bool{}, clients: []mailboxv1.MailboxClient{rec}}}, st.log)
	if err != nil {
		t.Fatal(err)
	}
	cached := fetch(serveOn(t, srv))
	if n, _ := srv.envelopes.len(); n != 2 {
		t.Errorf("%d envelopes cached, want 2", n)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	gauges := map[string]float64{}
	for _, f := range families {
		if len(f.GetMetric()) == 1 && f.GetMetric()[0].GetGauge() != nil {
			gauges[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if gauges["mailcluster_imap_envelope_cache_entries"] != 2 || gauges["mailcluster_imap_envelope_cache_bytes"] <= 0 {
		t.Errorf("envelope cache gauges: %v", gauges)
	}
	// The first FETCH asked for both envelopes, the second for none.
	rec.mu.Lock()
	hints := append([]string(nil), rec.cached...)
	rec.mu.Unlock()
	if len(hints) != 2 || hints[0] != "" || hints[1] != "1-2" {
		t.Errorf("cached_envelopes sent: %q, want [\"\" \"1-2\"]", hints)
	}
	_, offAddr := st.frontend(func(c *Config) { c.EnvelopeCache = 0 }, 0)
	plain := fetch(offAddr)
	want := `* 1 FETCH (ENVELOPE ("Tue, 24 Nov 2026 10:15:00 +0100" "=?utf-8?q?Gr=C3=BC=C3=9Fe_\"x\"?=" ` +
		`(("=?utf-8?q?Zo=C3=AB?=" NIL "zoe" "example.test"))`
	for i, l := range cached {
		if l != plain[i] {
			t.Errorf("line %d: cached %s, off %s", i, l, plain[i])
		}
	}
	if !strings.HasPrefix(cached[0], want) || !strings.Contains(cached[0], `((NIL NIL "team" NIL) (NIL NIL "a" "example.test") ("B \"b\"" NIL "b" "example.test") (NIL NIL NIL NIL))`) ||
		!strings.HasSuffix(cached[0], `"<p@example.test>" "<m1@example.test>"))`) || strings.TrimPrefix(cached[2], "* 1") != strings.TrimPrefix(cached[0], "* 1") {
		t.Errorf("envelopes:\n%s", strings.Join(cached, "\n"))
	}
}

// recordingClient records the cached_envelopes of every Fetch with
// ENVELOPE and the UID set of every Fetch ("" for none, else
// "start-end,…").
type recordingClient struct {
	mailboxv1.MailboxClient
	mu     sync.Mutex
	cached []string
	sets   []string
}

func rangesString(set *mailboxv1.UIDSet) string {
	var parts []string
	for _, r := range set.GetRanges() {
		parts = append(parts, fmt.Sprintf("%d-%d", r.Start, r.End))
	}
	return strings.Join(parts, ",")
}

func (c *recordingClient) Fetch(ctx context.Context, in *mailboxv1.FetchRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[mailboxv1.FetchResponse], error) {
	c.mu.Lock()
	if in.Envelope {
		c.cached = append(c.cached, rangesString(in.GetCachedEnvelopes()))
	}
	c.sets = append(c.sets, rangesString(in.GetUids()))
	c.mu.Unlock()
	return c.MailboxClient.Fetch(ctx, in, opts...)
}

// lastSet is the UID set of the latest Fetch.
func (c *recordingClient) lastSet() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sets[len(c.sets)-1]
}
