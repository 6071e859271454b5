package imap

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// A FETCH of one body section alone is answered by GetBody without a Fetch
// call; a message that GetBody does not find still gets the general answer.
func TestFetchBodyOnly(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("bodyonly")
	for i := 1; i <= 3; i++ {
		deliver(t, st.clients[0], id, testMessage(i))
	}
	_, addr := st.frontend(nil, 0)
	r := dialRaw(t, addr)
	r.send("a LOGIN bodyonly secret\r\nb SELECT INBOX\r\n")
	r.expect("a OK")
	r.expect("b OK")

	r.send("c UID FETCH 1:2 BODY.PEEK[TEXT]<0.5>\r\n")
	out := r.until("c")
	if !strings.Contains(out, "* 1 FETCH (UID 1 BODY[TEXT]<0> {5}\nHello") || !strings.Contains(out, "* 2 FETCH (UID 2 BODY[TEXT]<0> {5}\nHello") ||
		!strings.Contains(out, "c OK") {
		t.Fatalf("UID FETCH BODY.PEEK[TEXT]<0.5>:\n%s", out)
	}

	// No such part: the message's FETCH, then NO (as through Fetch).
	r.send("d FETCH 1 BODY.PEEK[5]\r\n")
	if out := r.until("d"); !strings.Contains(out, "d NO") {
		t.Fatalf("FETCH BODY.PEEK[5]:\n%s", out)
	}

	// Expunged behind the frontend's back (straight at the backend): the
	// message is left out, the others are answered.
	ctx := context.Background()
	mb, err := st.clients[0].Select(ctx, &mailboxv1.SelectRequest{AccountId: id, Name: "INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	one := &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: 2, End: 2}}}
	if _, err := st.clients[0].StoreFlags(ctx, &mailboxv1.StoreFlagsRequest{AccountId: id, MailboxId: mb.Status.MailboxId, Uids: one,
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_DELETED)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.clients[0].Expunge(ctx, &mailboxv1.ExpungeRequest{AccountId: id, MailboxId: mb.Status.MailboxId, Uids: one}); err != nil {
		t.Fatal(err)
	}
	r.send("e FETCH 1:3 BODY.PEEK[]\r\n")
	out = r.until("e")
	if strings.Contains(out, "* 2 FETCH (BODY[]") || !strings.Contains(out, "* 1 FETCH (BODY[] {") || !strings.Contains(out, "* 3 FETCH (BODY[] {") ||
		!strings.Contains(out, "e OK") {
		t.Fatalf("FETCH 1:3 BODY.PEEK[] after an expunge elsewhere:\n%s", out)
	}
}

// expungingClient expunges the message a GetBody asks for just before
// asking: another session's EXPUNGE between a FETCH's metadata and its
// body.
type expungingClient struct {
	mailboxv1.MailboxClient
}

func (c expungingClient) GetBody(ctx context.Context, in *mailboxv1.GetBodyRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[mailboxv1.BodyChunk], error) {
	one := &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: in.Uid, End: in.Uid}}}
	if _, err := c.StoreFlags(ctx, &mailboxv1.StoreFlagsRequest{AccountId: in.AccountId, MailboxId: in.MailboxId, Uids: one,
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_DELETED)}}); err != nil {
		return nil, err
	}
	if _, err := c.Expunge(ctx, &mailboxv1.ExpungeRequest{AccountId: in.AccountId, MailboxId: in.MailboxId, Uids: one}); err != nil {
		return nil, err
	}
	return c.MailboxClient.GetBody(ctx, in, opts...)
}

// A body whose message is expunged between the FETCH's metadata and its
// read answers NO [EXPUNGEISSUED], not that the mailbox does not exist,
// and the session goes on.
func TestFetchBodyOfMessageExpungedMeanwhile(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("gone")
	for i := 1; i <= 3; i++ {
		deliver(t, st.clients[0], id, testMessage(i))
	}
	srv, err := New(func() Config { c := DefaultConfig(); c.InsecureAuth = true; return c }(),
		Deps{Auth: st.dir, Router: &testRouter{down: map[int]bool{}, clients: []mailboxv1.MailboxClient{expungingClient{st.clients[0]}}}}, st.log)
	if err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, serveOn(t, srv))
	r.send("a LOGIN gone secret\r\nb SELECT INBOX\r\n")
	r.expect("a OK")
	r.expect("b OK")
	for i, cmd := range []string{"FETCH 1 BODY[]", "FETCH 2 BODY[TEXT]", "FETCH 3 BINARY[1]"} {
		tag := fmt.Sprintf("c%d", i)
		r.send(tag + " " + cmd + "\r\n")
		if out := r.until(tag); !strings.Contains(out, tag+" NO [EXPUNGEISSUED]") {
			t.Fatalf("%s of a message expunged meanwhile:\n%s", cmd, out)
		}
	}
	r.send("d NOOP\r\n")
	if out := r.until("d"); !strings.Contains(out, "d OK") {
		t.Fatalf("NOOP after: %s", out)
	}
}
