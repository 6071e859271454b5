package backend

// Quotas through the gRPC API: usage after deliver, append, copy, move,
// expunge and delete; limits enforced at deliver (per recipient), append
// and copy.

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

func quota(t *testing.T, c mailboxv1.MailboxClient, account string) (int64, int64) {
	t.Helper()
	q, err := c.GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: account})
	if err != nil {
		t.Fatalf("quota: %v", err)
	}
	return q.StorageBytes, q.Messages
}

func wantQuota(t *testing.T, c mailboxv1.MailboxClient, account, step string, bytes, messages int64) {
	t.Helper()
	if b, n := quota(t, c, account); b != bytes || n != messages {
		t.Fatalf("%s: usage %d bytes %d messages, want %d and %d", step, b, n, bytes, messages)
	}
}

func TestQuotaUsage(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "usage"
	wantQuota(t, c, a, "new account", 0, 0)
	m1, m2, m3 := testMessage("one", "1"), testMessage("two", "22"), testMessage("three", "333")
	s1, s2, s3 := int64(len(m1)), int64(len(m2)), int64(len(m3))

	mustDeliver(t, c, m1, a, "bystander")
	wantQuota(t, c, a, "deliver", s1, 1)
	wantQuota(t, c, "bystander", "deliver to two", s1, 1)
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Drafts"}, m2)
	wantQuota(t, c, a, "append", s1+s2, 2)
	// One deliver naming the same mailbox twice stores one copy.
	mustDeliver(t, c, m3, a, a)
	wantQuota(t, c, a, "deliver twice to one mailbox", s1+s2+s3, 3)
	if st := status1(t, c, a, "INBOX"); st.Messages != 2 {
		t.Fatalf("INBOX: %v", st)
	}

	inbox := selectBox(t, c, a, "INBOX").Status.MailboxId
	if _, err := c.Copy(ctxT(t), &mailboxv1.CopyRequest{AccountId: a, MailboxId: inbox, Uids: uidSet(1, 0), DestName: "Archive"}); err != nil {
		t.Fatal(err)
	}
	wantQuota(t, c, a, "copy", 2*s1+s2+2*s3, 5)
	if _, err := c.Move(ctxT(t), &mailboxv1.MoveRequest{AccountId: a, MailboxId: inbox, Uids: uidSet(1, 1), DestName: "Trash"}); err != nil {
		t.Fatal(err)
	}
	wantQuota(t, c, a, "move", 2*s1+s2+2*s3, 5)
	// Flag changes do not count.
	storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: inbox, Uids: uidSet(2, 2),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fDeleted, Keywords: []string{"Big"}}})
	wantQuota(t, c, a, "store", 2*s1+s2+2*s3, 5)
	if r, err := c.Expunge(ctxT(t), &mailboxv1.ExpungeRequest{AccountId: a, MailboxId: inbox}); err != nil || len(r.Expunged) != 1 {
		t.Fatalf("expunge: %v %v", r, err)
	}
	wantQuota(t, c, a, "expunge", 2*s1+s2+s3, 4)
	// Deleting a mailbox releases its messages.
	if _, err := c.DeleteMailbox(ctxT(t), &mailboxv1.DeleteMailboxRequest{AccountId: a, Name: "Archive"}); err != nil {
		t.Fatal(err)
	}
	wantQuota(t, c, a, "delete Archive", s1+s2, 2)
	// Renaming INBOX moves messages, usage stays.
	mustDeliver(t, c, m3, a)
	if _, err := c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: "INBOX", NewName: "Old"}); err != nil {
		t.Fatal(err)
	}
	wantQuota(t, c, a, "rename INBOX", s1+s2+s3, 3)
	wantQuota(t, c, "bystander", "unrelated account", s1, 1)
}

func TestQuotaDeliver(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	msg := testMessage("quota", "some text")
	size := int64(len(msg))
	const full, ok = "full", "roomy"
	mustDeliver(t, c, msg, full)
	mustDeliver(t, c, msg, ok)
	before := snapshot(t, c, full)

	for _, q := range []*mailboxv1.Quota{
		{StorageBytes: 2*size - 1},              // one byte short
		{Messages: 1},                           // at the message limit
		{StorageBytes: 2*size - 1, Messages: 5}, // either limit is enough
		{StorageBytes: 100 * size, Messages: 1},
	} {
		resp, err := deliver(t, c, msg,
			&mailboxv1.Recipient{AccountId: full, Quota: q},
			&mailboxv1.Recipient{AccountId: ok, Quota: &mailboxv1.Quota{StorageBytes: 100 * size, Messages: 100}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Results) != 2 || resp.Results[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OVER_QUOTA ||
			resp.Results[0].Uid != 0 || resp.Results[1].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK || resp.Results[1].Uid == 0 {
			t.Fatalf("quota %v: %v", q, resp.Results)
		}
		unchanged(t, c, full, before, fmt.Sprintf("over-quota delivery (%v)", q))
	}
	wantQuota(t, c, ok, "the other recipient", 5*size, 5)

	// Exactly at the limit is allowed; zero means unlimited.
	for _, q := range []*mailboxv1.Quota{{StorageBytes: 2 * size, Messages: 2}, {}, nil} {
		res := mustDeliverTo(t, c, msg, &mailboxv1.Recipient{AccountId: full, Quota: q})
		if res[0].Uid == 0 {
			t.Fatalf("quota %v: %v", q, res)
		}
	}
	wantQuota(t, c, full, "after deliveries within quota", 4*size, 4)

	// The limit counts the whole account, not the target mailbox.
	resp, err := deliver(t, c, msg, &mailboxv1.Recipient{AccountId: full, MailboxName: "Junk", Quota: &mailboxv1.Quota{Messages: 4}})
	if err != nil || resp.Results[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OVER_QUOTA {
		t.Fatalf("deliver to Junk over quota: %v %v", resp, err)
	}
	// Several copies for one account in one call: the second one no longer
	// fits.
	resp, err = deliver(t, c, msg,
		&mailboxv1.Recipient{AccountId: full, MailboxName: "Junk", Quota: &mailboxv1.Quota{Messages: 5}},
		&mailboxv1.Recipient{AccountId: full, MailboxName: "Archive", Quota: &mailboxv1.Quota{Messages: 5}})
	if err != nil || resp.Results[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK || resp.Results[1].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OVER_QUOTA {
		t.Fatalf("two copies, room for one: %v %v", resp, err)
	}
	wantQuota(t, c, full, "after two-copy delivery", 5*size, 5)
}

// mustDeliverTo delivers msg to recipients and checks every status.
func mustDeliverTo(t *testing.T, c mailboxv1.MailboxClient, msg []byte, rs ...*mailboxv1.Recipient) []*mailboxv1.RecipientResult {
	t.Helper()
	resp, err := deliver(t, c, msg, rs...)
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	for i, r := range resp.Results {
		if r.Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK {
			t.Fatalf("recipient %d: %v %s", i, r.Status, r.Detail)
		}
	}
	return resp.Results
}

func TestQuotaAppendAndCopy(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "appender"
	msg := testMessage("append quota", "body")
	size := int64(len(msg))
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "INBOX"}, msg)
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "INBOX"}, msg)
	before := snapshot(t, c, a)
	for _, q := range []*mailboxv1.Quota{{StorageBytes: 3*size - 1}, {Messages: 2}} {
		_, err := appendMsg(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Sent", Quota: q}, msg)
		wantReason(t, fmt.Sprintf("append over quota %v", q), err, ReasonOverQuota)
		unchanged(t, c, a, before, "append over quota")
	}
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Sent", Quota: &mailboxv1.Quota{StorageBytes: 3 * size, Messages: 3}}, msg)
	wantQuota(t, c, a, "append at the limit", 3*size, 3)

	inbox := selectBox(t, c, a, "INBOX").Status.MailboxId
	before = snapshot(t, c, a)
	for _, q := range []*mailboxv1.Quota{{StorageBytes: 5*size - 1}, {Messages: 4}, {Messages: 3}} {
		_, err := c.Copy(ctxT(t), &mailboxv1.CopyRequest{AccountId: a, MailboxId: inbox, Uids: uidSet(1, 0), DestName: "Archive", Quota: q})
		wantReason(t, fmt.Sprintf("copy over quota %v", q), err, ReasonOverQuota)
		unchanged(t, c, a, before, "copy over quota")
	}
	r, err := c.Copy(ctxT(t), &mailboxv1.CopyRequest{AccountId: a, MailboxId: inbox, Uids: uidSet(1, 0), DestName: "Archive",
		Quota: &mailboxv1.Quota{StorageBytes: 5 * size, Messages: 5}})
	if err != nil || len(r.DestUids) != 2 {
		t.Fatalf("copy at the limit: %v %v", r, err)
	}
	wantQuota(t, c, a, "copy at the limit", 5*size, 5)
	// A move is never over quota: it does not add usage.
	if _, err := c.Move(ctxT(t), &mailboxv1.MoveRequest{AccountId: a, MailboxId: inbox, Uids: uidSet(1, 0), DestName: "Trash"}); err != nil {
		t.Fatalf("move at the limit: %v", err)
	}
	wantQuota(t, c, a, "move", 5*size, 5)
	// Nothing to copy is not over quota.
	if _, err := c.Copy(ctxT(t), &mailboxv1.CopyRequest{AccountId: a, MailboxId: inbox, Uids: uidSet(1, 0), DestName: "Archive",
		Quota: &mailboxv1.Quota{Messages: 1}}); err != nil {
		t.Fatalf("empty copy with a full quota: %v", err)
	}
	_, err = appendMsg(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "INBOX", Quota: &mailboxv1.Quota{Messages: 5}}, msg)
	wantCode(t, "append at a full quota", err, codes.ResourceExhausted)
}
