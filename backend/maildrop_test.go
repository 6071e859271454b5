package backend

// Maildrop (POP3's view of a mailbox in one call): it must agree with
// Select and Fetch, split long lists without losing or repeating a
// message, and refuse what it must.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// recvAll reads a server stream to its end and returns what it sent, or
// its error.
func recvAll[T any](st interface{ Recv() (T, error) }, err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	var out []T
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
}

// maildropErr reads a Maildrop stream to its end.
func maildropErr(ctx context.Context, c mailboxv1.MailboxClient, account, name string) ([]*mailboxv1.MaildropResponse, error) {
	return recvAll(c.Maildrop(ctx, &mailboxv1.MaildropRequest{AccountId: account, Name: name}))
}

// maildropEntry is one message of a maildrop.
type maildropEntry struct {
	uid   uint32
	size  int64
	flags uint32
}

// maildrop returns the messages of a Maildrop call and checks that every
// response names the mailbox that Select names, with parallel lists in
// ascending UID order.
func maildrop(t *testing.T, c mailboxv1.MailboxClient, account, name string) []maildropEntry {
	t.Helper()
	resps, err := maildropErr(ctxT(t), c, account, name)
	if err != nil {
		t.Fatalf("maildrop %s: %v", name, err)
	}
	if len(resps) == 0 {
		t.Fatalf("maildrop %s: no response", name)
	}
	sel := selectBox(t, c, account, name)
	out := []maildropEntry{}
	for i, r := range resps {
		if r.MailboxId != sel.Status.MailboxId || r.UidValidity != sel.Status.UidValidity || r.UidValidity == 0 {
			t.Fatalf("maildrop %s response %d: mailbox %d uidvalidity %d, Select says %d %d",
				name, i, r.MailboxId, r.UidValidity, sel.Status.MailboxId, sel.Status.UidValidity)
		}
		if len(r.Sizes) != len(r.Uids) || len(r.SystemFlags) != len(r.Uids) {
			t.Fatalf("maildrop %s response %d: %d uids, %d sizes, %d flags", name, i, len(r.Uids), len(r.Sizes), len(r.SystemFlags))
		}
		if i > 0 && len(r.Uids) == 0 {
			t.Fatalf("maildrop %s: empty response %d after the first", name, i)
		}
		for j, uid := range r.Uids {
			if n := len(out); n > 0 && out[n-1].uid >= uid {
				t.Fatalf("maildrop %s: uid %d after %d", name, uid, out[n-1].uid)
			}
			out = append(out, maildropEntry{uid, r.Sizes[j], r.SystemFlags[j]})
		}
	}
	return out
}

// fetchedDrop is what Select and Fetch say the maildrop is.
func fetchedDrop(t *testing.T, c mailboxv1.MailboxClient, account, name string) []maildropEntry {
	t.Helper()
	out := []maildropEntry{}
	for _, m := range fetchAll(t, c, account, selectBox(t, c, account, name).Status.MailboxId, false) {
		out = append(out, maildropEntry{m.Uid, m.Size, m.Flags.GetSystem()})
	}
	return out
}

func TestMaildrop(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "popper"

	// A new account: its INBOX exists and is empty (one response).
	resps, err := maildropErr(ctxT(t), c, a, "INBOX")
	if err != nil || len(resps) != 1 || len(resps[0].Uids) != 0 {
		t.Fatalf("empty INBOX: %v %v", resps, err)
	}
	if got := maildrop(t, c, a, "INBOX"); len(got) != 0 {
		t.Fatalf("empty INBOX: %v", got)
	}

	// Five messages of different sizes; 2 is expunged, 3 gets \Seen,
	// 4 \Deleted (POP3 still lists it) and 5 \Seen \Flagged and a keyword.
	for i := 1; i <= 5; i++ {
		mustDeliver(t, c, testMessage(fmt.Sprint("m", i), fmt.Sprintf("%0*d\r\n", 10*i, i)), a)
	}
	mustDeliver(t, c, testMessage("elsewhere", "x"), "someone-else")
	id := selectBox(t, c, a, "INBOX").Status.MailboxId
	set := func(uid, flags uint32, kw ...string) {
		storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(uid, uid),
			Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: flags, Keywords: kw}})
	}
	set(2, fDeleted)
	if _, err := c.Expunge(ctxT(t), &mailboxv1.ExpungeRequest{AccountId: a, MailboxId: id, Uids: uidSet(2, 2)}); err != nil {
		t.Fatal(err)
	}
	set(3, fSeen)
	set(4, fDeleted)
	set(5, fSeen|fFlagged, "Work")
	got := maildrop(t, c, a, "INBOX")
	if want := fetchedDrop(t, c, a, "INBOX"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("maildrop %v, Fetch says %v", got, want)
	}
	wantFlags := []uint32{0, fSeen, fDeleted, fSeen | fFlagged}
	if len(got) != 4 || got[0].uid != 1 || got[1].uid != 3 || got[2].uid != 4 || got[3].uid != 5 {
		t.Fatalf("maildrop %v", got)
	}
	for i, m := range got {
		if m.flags != wantFlags[i] || m.size <= 0 || i > 0 && m.size <= got[i-1].size {
			t.Fatalf("maildrop entry %d: %+v", i, m)
		}
	}

	// Another mailbox, by name (case-insensitive INBOX too).
	if got := maildrop(t, c, a, "inbox"); len(got) != 4 {
		t.Fatalf("maildrop of inbox: %v", got)
	}
	if got := maildrop(t, c, a, "Archive"); len(got) != 0 {
		t.Fatalf("maildrop of Archive: %v", got)
	}
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Archive"}, testMessage("kept", "x"))
	if got := maildrop(t, c, a, "Archive"); len(got) != 1 || got[0].uid != 1 {
		t.Fatalf("maildrop of Archive: %v", got)
	}

	// Errors, each changing nothing.
	before := snapshot(t, c, a)
	_, err = maildropErr(ctxT(t), c, a, "No/Such")
	wantCode(t, "maildrop of a missing mailbox", err, codes.NotFound)
	for _, name := range []string{"", "a//b", "/lead", strings.Repeat("x", 600), "*"} {
		_, err = maildropErr(ctxT(t), c, a, name)
		wantCode(t, fmt.Sprintf("maildrop of %q", name), err, codes.InvalidArgument)
	}
	for _, acct := range []string{"", strings.Repeat("a", 300)} {
		_, err = maildropErr(ctxT(t), c, acct, "INBOX")
		wantCode(t, fmt.Sprintf("maildrop for account %q", acct), err, codes.InvalidArgument)
	}
	other := metadata.AppendToOutgoingContext(ctxT(t), AccountHeader, "intruder")
	_, err = maildropErr(other, c, a, "INBOX")
	wantCode(t, "maildrop for another account", err, codes.PermissionDenied)
	// Another account's INBOX is its own, never a's.
	if got := maildrop(t, c, "nosy", "INBOX"); len(got) != 0 {
		t.Fatalf("nosy sees %v", got)
	}
	unchanged(t, c, a, before, "Maildrop")
}

// TestMaildropBatches: a list longer than a batch is split into full
// batches and a last one, never an empty one after the first; batch size 2
// stands for the 10,000 of the RPC.
func TestMaildropBatches(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	st := e.backends[0].svc.store
	const a = "batched"
	for n := 1; n <= 5; n++ {
		mustDeliver(t, c, testMessage(fmt.Sprint("m", n), "x"), a)
		var sizes []int
		var uids []uint32
		err := st.Maildrop(ctxT(t), a, "INBOX", 2, func(r *mailboxv1.MaildropResponse) error {
			sizes = append(sizes, len(r.Uids))
			uids = append(uids, r.Uids...)
			return nil
		})
		want := map[int]string{1: "[1]", 2: "[2]", 3: "[2 1]", 4: "[2 2]", 5: "[2 2 1]"}[n]
		if err != nil || fmt.Sprint(sizes) != want || len(uids) != n || uids[n-1] != uint32(n) {
			t.Fatalf("%d messages in batches of 2: %v %v %v, want batches %s", n, sizes, uids, err, want)
		}
	}
	// An error from emit ends the call with it.
	stop := errors.New("stop")
	calls := 0
	err := st.Maildrop(ctxT(t), a, "INBOX", 2, func(*mailboxv1.MaildropResponse) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("emit error: %v after %d calls", err, calls)
	}
}
