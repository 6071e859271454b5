package imap

import (
	"context"
	"fmt"
	"strings"
	"testing"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// FETCH of consecutive sequence numbers asks the backend for one UID range
// also across expunged UIDs, and answers exactly the messages there are;
// other sets are asked for as they are.
func TestFetchSetAcrossHoles(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("holes")
	for i := 1; i <= 6; i++ {
		deliver(t, st.clients[0], id, []byte(fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", i, i)))
	}
	ctx := context.Background()
	mb, err := st.clients[0].Select(ctx, &mailboxv1.SelectRequest{AccountId: id, Name: "INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	gone := &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: 2, End: 2}, {Start: 4, End: 4}}}
	if _, err := st.clients[0].StoreFlags(ctx, &mailboxv1.StoreFlagsRequest{AccountId: id, MailboxId: mb.Status.MailboxId, Uids: gone,
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_DELETED)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.clients[0].Expunge(ctx, &mailboxv1.ExpungeRequest{AccountId: id, MailboxId: mb.Status.MailboxId, Uids: gone}); err != nil {
		t.Fatal(err)
	}
	rec := &recordingClient{MailboxClient: st.clients[0]}
	// MessageCache 0: the sets reach the backend only without the message cache.
	srv, err := New(func() Config { c := DefaultConfig(); c.InsecureAuth, c.MessageCache = true, 0; return c }(),
		Deps{Auth: st.dir, Router: &testRouter{down: map[int]bool{}, clients: []mailboxv1.MailboxClient{rec}}}, st.log)
	if err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, serveOn(t, srv))
	r.send("a LOGIN holes secret\r\n")
	r.expect("a OK")
	r.send("b SELECT INBOX\r\n")
	r.until("b")
	for _, tc := range []struct{ cmd, set, want string }{
		{"c FETCH 1:* (UID FLAGS)", "1-6", "1:1 2:3 3:5 4:6"},
		{"d FETCH 2:3 (UID FLAGS)", "3-5", "2:3 3:5"},
		{"e FETCH 1,3 (UID FLAGS)", "1-1,5-5", "1:1 3:5"},
		{"f UID FETCH 1:6 (UID FLAGS)", "1-6", "1:1 2:3 3:5 4:6"},
	} {
		r.send(tc.cmd + "\r\n")
		out := r.until(tc.cmd[:1])
		var got []string
		for _, l := range strings.Split(out, "\n") {
			var seq, uid int
			if _, err := fmt.Sscanf(l, "* %d FETCH (UID %d", &seq, &uid); err == nil {
				got = append(got, fmt.Sprintf("%d:%d", seq, uid))
			}
		}
		if strings.Join(got, " ") != tc.want || !strings.Contains(out, tc.cmd[:1]+" OK") {
			t.Errorf("%s: %q, want %s", tc.cmd, out, tc.want)
		}
		if set := rec.lastSet(); set != tc.set {
			t.Errorf("%s: asked the backend for %s, want %s", tc.cmd, set, tc.set)
		}
	}
}
