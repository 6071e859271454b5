package backend

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// bodies reads a GetBodies stream: the bytes of each message in the order
// sent, nil for a gone UID.
func bodies(t *testing.T, c mailboxv1.MailboxClient, req *mailboxv1.GetBodiesRequest) ([]uint32, [][]byte, error) {
	t.Helper()
	st, err := c.GetBodies(ctxT(t), req)
	if err != nil {
		return nil, nil, err
	}
	var uids []uint32
	var out [][]byte
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return uids, out, nil
		}
		if err != nil {
			return uids, out, err
		}
		if r.Uid != 0 {
			uids = append(uids, r.Uid)
			out = append(out, nil)
			if r.Gone {
				continue
			}
			out[len(out)-1] = []byte{}
			if int(r.TotalSize) < len(r.Data) {
				t.Fatalf("uid %d: total size %d < first chunk %d", r.Uid, r.TotalSize, len(r.Data))
			}
		}
		if len(out) == 0 {
			t.Fatal("data before a first chunk")
		}
		out[len(out)-1] = append(out[len(out)-1], r.Data...)
	}
}

func TestGetBodies(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "pop"
	var msgs [][]byte
	for i := 1; i <= 3; i++ {
		msgs = append(msgs, testMessage(fmt.Sprint("m", i), fmt.Sprintf(".line %d\r\n\xe2\x82\xac\r\n", i)))
	}
	// A body of several chunks.
	msgs = append(msgs, testMessage("big", strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\r\n", 3000)))
	for _, m := range msgs {
		mustDeliver(t, c, m, a)
	}
	id := selectBox(t, c, a, "INBOX").Status.MailboxId
	if _, err := c.StoreFlags(ctxT(t), &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(2, 2),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fDeleted}}); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Expunge(ctxT(t), &mailboxv1.ExpungeRequest{AccountId: a, MailboxId: id, Uids: uidSet(2, 2)}); err != nil || len(r.Expunged) != 1 {
		t.Fatalf("expunge: %v %v", r, err)
	}

	// In the order asked, repeats included; expunged and unknown UIDs gone.
	uids, got, err := bodies(t, c, &mailboxv1.GetBodiesRequest{AccountId: a, MailboxId: id, Uids: []uint32{4, 1, 2, 99, 3, 1}})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{msgs[3], msgs[0], nil, nil, msgs[2], msgs[0]}
	if fmt.Sprint(uids) != "[4 1 2 99 3 1]" || len(got) != len(want) {
		t.Fatalf("uids %v, %d bodies", uids, len(got))
	}
	for i := range want {
		if (want[i] == nil) != (got[i] == nil) || !bytes.Equal(got[i], want[i]) {
			t.Errorf("body %d (uid %d): %d bytes, want %d", i, uids[i], len(got[i]), len(want[i]))
		}
		if want[i] != nil {
			one, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: id, Uid: uids[i]})
			if err != nil || !bytes.Equal(one, got[i]) {
				t.Errorf("uid %d differs from GetBody: %v", uids[i], err)
			}
		}
	}
	// Nothing asked, nothing sent.
	if uids, _, err := bodies(t, c, &mailboxv1.GetBodiesRequest{AccountId: a, MailboxId: id}); err != nil || len(uids) != 0 {
		t.Fatalf("no UIDs: %v %v", uids, err)
	}
	// A mailbox that does not exist, or is another account's.
	_, _, err = bodies(t, c, &mailboxv1.GetBodiesRequest{AccountId: a, MailboxId: id + 1000, Uids: []uint32{1}})
	wantCode(t, "GetBodies of an unknown mailbox", err, codes.NotFound)
	_, _, err = bodies(t, c, &mailboxv1.GetBodiesRequest{AccountId: "nosy", MailboxId: id, Uids: []uint32{1}})
	wantCode(t, "GetBodies of another account's mailbox", err, codes.NotFound)
	// Too many UIDs.
	_, _, err = bodies(t, c, &mailboxv1.GetBodiesRequest{AccountId: a, MailboxId: id, Uids: make([]uint32, maxBodiesPerCall+1)})
	wantCode(t, "GetBodies of too many UIDs", err, codes.InvalidArgument)
}
