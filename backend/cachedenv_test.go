package backend

import (
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mailcluster/backend/store"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

func TestDropCachedEnvelopes(t *testing.T) {
	rows := make([]store.FetchRow, 12)
	for i := range rows {
		rows[i] = store.FetchRow{UID: uint32(i + 1), Envelope: []byte{1}}
	}
	// Unsorted, overlapping, reversed and "*" ranges.
	dropCachedEnvelopes(rows, sortedSpans([]*mailboxv1.UIDRange{{Start: 9, End: 3}, {Start: 4, End: 4}, {Start: 1, End: 1}, {Start: 11, End: 0}}))
	var kept []uint32
	for _, r := range rows {
		if r.Envelope != nil {
			kept = append(kept, r.UID)
		}
	}
	if len(kept) != 2 || kept[0] != 2 || kept[1] != 10 {
		t.Errorf("envelopes kept for %v, want [2 10]", kept)
	}
}

// Fetch leaves out the envelopes the caller has (cached_envelopes) and
// refuses a set with too many ranges.
func TestFetchCachedEnvelopes(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "cachedenv"
	id := fillInbox(t, c, a, 5)
	st, err := c.Fetch(ctxT(t), &mailboxv1.FetchRequest{AccountId: a, MailboxId: id, Envelope: true,
		CachedEnvelopes: &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: 2, End: 3}, {Start: 5, End: 5}}}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		r, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range r.Messages {
			got = append(got, m.Envelope.GetSubject())
		}
	}
	if strings.Join(got, ",") != "msg1,,,msg4," {
		t.Errorf("subjects %q, want msg1,,,msg4,", got)
	}
	many := &mailboxv1.UIDSet{}
	for i := uint32(1); i <= 20002; i += 2 {
		many.Ranges = append(many.Ranges, &mailboxv1.UIDRange{Start: i, End: i})
	}
	st, err = c.Fetch(ctxT(t), &mailboxv1.FetchRequest{AccountId: a, MailboxId: id, Envelope: true, CachedEnvelopes: many})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("10,001 cached ranges: %v, want InvalidArgument", err)
	}
}
