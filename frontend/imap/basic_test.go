package imap

import (
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/client_golang/prometheus"
)

func fetchAll(t *testing.T, c *imapclient.Client, set imap.NumSet, opts *imap.FetchOptions) []*imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(set, opts).Collect()
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return msgs
}

func TestLoginSelectFetchStoreSearch(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("alice")
	for i := 1; i <= 3; i++ {
		deliver(t, st.clients[0], id, testMessage(i))
	}
	srv, addr := st.frontend(nil, 0)
	c := login(t, addr, "alice")

	if err := c.Login("alice", "secret").Wait(); err == nil {
		t.Fatal("second LOGIN succeeded")
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 3 || sel.UIDValidity == 0 || sel.UIDNext != 4 {
		t.Fatalf("select: %+v", sel)
	}

	msgs := fetchAll(t, c, imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{Flags: true, Envelope: true, UID: true,
		InternalDate: true, RFC822Size: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}})
	if len(msgs) != 3 {
		t.Fatalf("fetched %d messages", len(msgs))
	}
	m := msgs[1]
	if m.SeqNum != 2 || m.UID != 2 || m.Envelope.Subject != "message 2" || m.Envelope.MessageID != "m2@example.test" ||
		len(m.Envelope.From) != 1 || m.Envelope.From[0].Addr() != "alice@example.test" || m.RFC822Size != int64(len(testMessage(2))) {
		t.Fatalf("message 2: %+v env %+v", m, m.Envelope)
	}
	if bs, ok := m.BodyStructure.(*imap.BodyStructureSinglePart); !ok || bs.MediaType() != "text/plain" {
		t.Fatalf("bodystructure %#v", m.BodyStructure)
	}
	if len(m.Flags) != 0 {
		t.Fatalf("flags %v", m.Flags)
	}

	// BODY.PEEK[] leaves \Seen; BODY[] sets it and returns FLAGS.
	peek := &imap.FetchItemBodySection{Peek: true}
	msgs = fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{peek}})
	if got := string(msgs[0].FindBodySection(peek)); got != string(testMessage(1)) {
		t.Fatalf("BODY.PEEK[] = %q", got)
	}
	full := &imap.FetchItemBodySection{}
	msgs = fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{full}})
	if len(msgs[0].Flags) != 1 || msgs[0].Flags[0] != imap.FlagSeen {
		t.Fatalf("after BODY[]: flags %v", msgs[0].Flags)
	}
	// Sections: TEXT, HEADER.FIELDS, partial.
	text := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Peek: true}
	fields := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}
	part := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 6, Size: 5}}
	msgs = fetchAll(t, c, imap.SeqSetNum(2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{text, fields, part}})
	if got := string(msgs[0].FindBodySection(text)); got != "Hello number 2.\r\n" {
		t.Fatalf("TEXT = %q", got)
	}
	if got := string(msgs[0].FindBodySection(fields)); got != "Subject: message 2\r\n\r\n" {
		t.Fatalf("HEADER.FIELDS = %q", got)
	}
	if got := string(msgs[0].FindBodySection(part)); got != "Alice" {
		t.Fatalf("partial = %q", got)
	}

	// STORE and SEARCH.
	stored, err := c.Store(imap.SeqSetNum(2, 3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}}, nil).Collect()
	if err != nil || len(stored) != 2 {
		t.Fatalf("store: %v %v", stored, err)
	}
	res, err := c.Search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := res.AllSeqNums(); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("SEARCH FLAGGED = %v", got)
	}
	res, err = c.UIDSearch(&imap.SearchCriteria{Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagSeen}}},
		Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "message 3"}}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := res.AllUIDs(); len(got) != 1 || got[0] != 3 {
		t.Fatalf("UID SEARCH = %v", got)
	}
	res, err = c.Search(&imap.SearchCriteria{Body: []string{"number 1"}}, nil).Wait()
	if err != nil || len(res.AllSeqNums()) != 1 {
		t.Fatalf("SEARCH BODY: %v %v", res, err)
	}

	// FETCH 1:* streams everything.
	msgs = fetchAll(t, c, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, UID: true})
	if len(msgs) != 3 || len(msgs[2].Flags) != 2 {
		t.Fatalf("FETCH 1:* = %d, %v", len(msgs), msgs[2].Flags)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		seen[f.GetName()] = true
	}
	for _, want := range []string{"mailcluster_imap_command_duration_seconds", "mailcluster_imap_logins_total", "mailcluster_imap_body_bytes_total"} {
		if !seen[want] {
			t.Errorf("metric %s missing", want)
		}
	}
}

func TestBodyStreaming(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("big")
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 40000) // ~2.5 MB
	msg := []byte("Subject: big\r\nContent-Type: text/plain\r\n\r\n" + body)
	deliver(t, st.clients[0], id, msg)
	_, addr := st.frontend(nil, 0)
	c := login(t, addr, "big")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cmd := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	m := cmd.Next()
	if m == nil {
		t.Fatal("no message")
	}
	var got int64
	for item := m.Next(); item != nil; item = m.Next() {
		if b, ok := item.(imapclient.FetchItemDataBodySection); ok {
			n, err := io.Copy(io.Discard, b.Literal)
			if err != nil {
				t.Fatal(err)
			}
			got = n
		}
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if got != int64(len(msg)) {
		t.Fatalf("body %d bytes, want %d", got, len(msg))
	}
}
