package imap

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

// A large mailbox: FETCH 1:* (FLAGS ENVELOPE) streams in backend batches,
// and a sparse set with more ranges than one backend call takes is split.
func TestLargeMailboxFetch(t *testing.T) {
	if testing.Short() {
		t.Skip("delivers 2,100 messages")
	}
	st := newStack(t, 1)
	id := st.user("kim")
	const n = 2100
	deliverMany(t, st.clients[0], id, n)
	srv, addr := st.frontend(func(c *Config) { c.FetchBatch = 100 }, 0)
	c := login(t, addr, "kim")
	if sel, err := c.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != n {
		t.Fatalf("select: %v %v", sel, err)
	}
	// The second time from the message cache, in pieces of hitChunk.
	for pass := 0; pass < 2; pass++ {
		waitCurrent(t, srv)
		before := cachedAnswers(t, srv, "fetch")
		cmd := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, Envelope: true, RFC822Size: true})
		count := 0
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			buf, err := m.Collect()
			if err != nil {
				t.Fatal(err)
			}
			count++
			if buf.SeqNum != uint32(count) || buf.Envelope == nil || buf.RFC822Size == 0 {
				t.Fatalf("pass %d, message %d: %+v", pass, count, buf)
			}
		}
		if err := cmd.Close(); err != nil || count != n {
			t.Fatalf("FETCH 1:* gave %d messages: %v", count, err)
		}
		if cached := cachedAnswers(t, srv, "fetch") - before; (pass == 0) != (cached == 0) || (pass == 1 && cached != n) {
			t.Fatalf("pass %d: %v messages from the cache", pass, cached)
		}
	}
	var odd imap.SeqSet
	for i := uint32(1); i <= n; i += 2 {
		odd.AddNum(i)
	}
	msgs := fetchAll(t, c, odd, &imap.FetchOptions{UID: true})
	if len(msgs) != n/2 || msgs[len(msgs)-1].SeqNum != n-1 {
		t.Fatalf("sparse FETCH: %d messages", len(msgs))
	}
	res, err := c.Search(&imap.SearchCriteria{SeqNum: []imap.SeqSet{odd}}, &imap.SearchOptions{ReturnCount: true}).Wait()
	if err != nil || res.Count != n/2 {
		t.Fatalf("SEARCH RETURN (COUNT) of the odd messages: %+v %v", res, err)
	}
}
