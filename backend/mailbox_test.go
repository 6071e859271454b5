package backend

// Mailbox management through the gRPC API: default mailboxes, LIST
// patterns and options, create, delete, rename (with hierarchy and INBOX),
// subscriptions and status. Also the small helpers the other RPC test files
// of this package share (wantCode, snapshot, ...).

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// ---- shared helpers ----

// wantCode fails unless err is a gRPC status with code c.
func wantCode(t *testing.T, what string, err error, c codes.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v", what, c)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: %v is not a gRPC status, want %v", what, err, c)
	}
	if st.Code() != c {
		t.Fatalf("%s: code %v (%s), want %v", what, st.Code(), st.Message(), c)
	}
}

// wantReason fails unless err is RESOURCE_EXHAUSTED with an ErrorInfo
// detail carrying reason.
func wantReason(t *testing.T, what string, err error, reason string) {
	t.Helper()
	wantCode(t, what, err, codes.ResourceExhausted)
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.Reason != reason {
				t.Fatalf("%s: reason %q, want %q", what, info.Reason, reason)
			}
			return
		}
	}
	t.Fatalf("%s: no ErrorInfo detail in %v, want reason %q", what, err, reason)
}

// snapshot renders everything the API shows about an account: its
// mailboxes with subscriptions and status, every message's metadata, and
// the quota usage. Two equal snapshots mean nothing visible changed.
func snapshot(t *testing.T, c mailboxv1.MailboxClient, account string) string {
	t.Helper()
	var b strings.Builder
	l, err := c.ListMailboxes(ctxT(t), &mailboxv1.ListMailboxesRequest{AccountId: account, WithStatus: true})
	if err != nil {
		t.Fatalf("snapshot: list: %v", err)
	}
	for _, m := range l.Mailboxes {
		b.WriteString(prototext.Format(m))
		b.WriteString("\n")
		if m.Exists {
			for _, msg := range fetchAll(t, c, account, m.MailboxId, true) {
				b.WriteString(prototext.Format(msg))
				b.WriteString("\n")
			}
		}
	}
	q, err := c.GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: account})
	if err != nil {
		t.Fatalf("snapshot: quota: %v", err)
	}
	fmt.Fprintf(&b, "quota %d bytes %d messages\n", q.StorageBytes, q.Messages)
	return b.String()
}

// unchanged fails if the account's snapshot differs from before.
func unchanged(t *testing.T, c mailboxv1.MailboxClient, account, before, what string) {
	t.Helper()
	if after := snapshot(t, c, account); after != before {
		t.Fatalf("%s changed the account:\nbefore:\n%s\nafter:\n%s", what, before, after)
	}
}

// list returns the mailboxes of a LIST by name.
func list(t *testing.T, c mailboxv1.MailboxClient, r *mailboxv1.ListMailboxesRequest) map[string]*mailboxv1.MailboxInfo {
	t.Helper()
	resp, err := c.ListMailboxes(ctxT(t), r)
	if err != nil {
		t.Fatalf("list %v: %v", r.Patterns, err)
	}
	out := map[string]*mailboxv1.MailboxInfo{}
	for _, m := range resp.Mailboxes {
		if _, dup := out[m.Name]; dup {
			t.Fatalf("list %v: %q twice", r.Patterns, m.Name)
		}
		out[m.Name] = m
	}
	return out
}

// names returns the sorted names of a list result.
func names(m map[string]*mailboxv1.MailboxInfo) string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func listNames(t *testing.T, c mailboxv1.MailboxClient, account string, patterns ...string) string {
	t.Helper()
	return names(list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: account, Patterns: patterns}))
}

func create(t *testing.T, c mailboxv1.MailboxClient, account, name string) *mailboxv1.MailboxInfo {
	t.Helper()
	r, err := c.CreateMailbox(ctxT(t), &mailboxv1.CreateMailboxRequest{AccountId: account, Name: name})
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
	return r.Mailbox
}

func status1(t *testing.T, c mailboxv1.MailboxClient, account, name string) *mailboxv1.MailboxStatus {
	t.Helper()
	st, err := c.GetStatus(ctxT(t), &mailboxv1.GetStatusRequest{AccountId: account, Name: name})
	if err != nil {
		t.Fatalf("status %q: %v", name, err)
	}
	return st
}

// mustAppend appends msg to a mailbox and returns the response.
func mustAppend(t *testing.T, c mailboxv1.MailboxClient, h *mailboxv1.AppendHeader, msg []byte) *mailboxv1.AppendResponse {
	t.Helper()
	r, err := appendMsg(t, c, h, msg)
	if err != nil {
		t.Fatalf("append to %q: %v", h.MailboxName, err)
	}
	return r
}

// uidsOf returns the UIDs of messages.
func uidsOf(ms []*mailboxv1.MessageMeta) []uint32 {
	out := []uint32{}
	for _, m := range ms {
		out = append(out, m.Uid)
	}
	return out
}

// fetchSet returns the metadata of the messages in set, or the error of
// the stream.
func fetchSet(t *testing.T, c mailboxv1.MailboxClient, r *mailboxv1.FetchRequest) ([]*mailboxv1.MessageMeta, error) {
	t.Helper()
	st, err := c.Fetch(ctxT(t), r)
	if err != nil {
		return nil, err
	}
	var out []*mailboxv1.MessageMeta
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Messages...)
	}
}

func fmtUIDs(u []uint32) string { return fmt.Sprint(u) }

// ---- tests ----

func TestDefaultMailboxes(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	boxes := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: "fresh"})
	want := map[string]mailboxv1.SpecialUse{
		"INBOX":   mailboxv1.SpecialUse_SPECIAL_USE_NONE,
		"Drafts":  mailboxv1.SpecialUse_SPECIAL_USE_DRAFTS,
		"Sent":    mailboxv1.SpecialUse_SPECIAL_USE_SENT,
		"Trash":   mailboxv1.SpecialUse_SPECIAL_USE_TRASH,
		"Junk":    mailboxv1.SpecialUse_SPECIAL_USE_JUNK,
		"Archive": mailboxv1.SpecialUse_SPECIAL_USE_ARCHIVE,
	}
	if len(boxes) != len(want) {
		t.Fatalf("new account has %s", names(boxes))
	}
	ids := map[int64]bool{}
	validities := map[uint32]bool{}
	for n, use := range want {
		m := boxes[n]
		if m == nil {
			t.Fatalf("no %s in %s", n, names(boxes))
		}
		if m.SpecialUse != use || !m.Exists || !m.Subscribed || m.HasChildren || m.MailboxId == 0 || m.Status != nil {
			t.Fatalf("%s: %v", n, m)
		}
		ids[m.MailboxId] = true
		st := status1(t, c, "fresh", n)
		if st.Messages != 0 || st.UidNext != 1 || st.UidValidity == 0 || st.MailboxId != m.MailboxId || st.Name != n {
			t.Fatalf("%s status %v", n, st)
		}
		validities[st.UidValidity] = true
	}
	if len(ids) != 6 || len(validities) != 6 {
		t.Fatalf("mailbox ids or UIDVALIDITYs repeat: %v %v", ids, validities)
	}
	// special_use_only lists the five special-use mailboxes.
	su := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: "fresh", SpecialUseOnly: true})
	if got := names(su); got != "Archive,Drafts,Junk,Sent,Trash" {
		t.Fatalf("special_use_only: %s", got)
	}
	// with_status fills the status of every listed mailbox.
	ws := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: "fresh", WithStatus: true})
	for n, m := range ws {
		if m.Status == nil || m.Status.Name != n || m.Status.MailboxId != m.MailboxId || m.Status.UidNext != 1 {
			t.Fatalf("with_status %s: %v", n, m.Status)
		}
	}
	// Another account gets its own mailboxes.
	other := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: "other"})
	for n, m := range other {
		if m.MailboxId == boxes[n].MailboxId {
			t.Fatalf("%s shared between accounts", n)
		}
	}
}

func TestListPatternsAndSubscriptions(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "lister"
	create(t, c, a, "Work/Projects/Alpha")
	create(t, c, a, "Work/Notes")
	create(t, c, a, "Private")
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Work/Notes"}, testMessage("note", "text"))

	all := "Archive,Drafts,INBOX,Junk,Private,Sent,Trash,Work,Work/Notes,Work/Projects,Work/Projects/Alpha"
	for _, tc := range []struct {
		patterns []string
		want     string
	}{
		{nil, all},
		{[]string{"*"}, all},
		{[]string{"%"}, "Archive,Drafts,INBOX,Junk,Private,Sent,Trash,Work"},
		{[]string{"Work/%"}, "Work/Notes,Work/Projects"},
		{[]string{"Work/*"}, "Work/Notes,Work/Projects,Work/Projects/Alpha"},
		{[]string{"*/Alpha"}, "Work/Projects/Alpha"},
		{[]string{"%/Alpha"}, ""},
		{[]string{"W*s"}, "Work/Notes,Work/Projects"},
		{[]string{"W%s"}, ""},
		{[]string{"inbox"}, "INBOX"},
		{[]string{"INBOX*"}, "INBOX"},
		{[]string{"work"}, ""}, // only INBOX is case-insensitive
		{[]string{"Private", "Sent", "Nothing"}, "Private,Sent"},
		{[]string{"%", "Work/%"}, "Archive,Drafts,INBOX,Junk,Private,Sent,Trash,Work,Work/Notes,Work/Projects"},
	} {
		if got := listNames(t, c, a, tc.patterns...); got != tc.want {
			t.Errorf("LIST %q = %s, want %s", tc.patterns, got, tc.want)
		}
	}
	boxes := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a, WithStatus: true})
	if m := boxes["Work"]; !m.HasChildren || !m.Exists || m.Subscribed {
		t.Fatalf("Work: %v", m)
	}
	if m := boxes["Work/Projects/Alpha"]; m.HasChildren || !m.Exists {
		t.Fatalf("Work/Projects/Alpha: %v", m)
	}
	if st := boxes["Work/Notes"].Status; st.Messages != 1 || st.UidNext != 2 || st.Unseen != 1 {
		t.Fatalf("Work/Notes status %v", st)
	}

	// Subscriptions: a new mailbox is not subscribed; a name may be
	// subscribed without existing.
	set := func(name string, on bool) {
		t.Helper()
		if _, err := c.SetSubscribed(ctxT(t), &mailboxv1.SetSubscribedRequest{AccountId: a, Name: name, Subscribed: on}); err != nil {
			t.Fatalf("subscribe %q %v: %v", name, on, err)
		}
	}
	subscribed := func() map[string]*mailboxv1.MailboxInfo {
		t.Helper()
		return list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a, SubscribedOnly: true})
	}
	if got := names(subscribed()); got != "Archive,Drafts,INBOX,Junk,Sent,Trash" {
		t.Fatalf("subscribed: %s", got)
	}
	set("Work/Notes", true)
	set("Work/Notes", true) // idempotent
	set("Ghost/Town", true)
	set("Junk", false)
	set("Junk", false)
	subs := subscribed()
	if got := names(subs); got != "Archive,Drafts,Ghost/Town,INBOX,Sent,Trash,Work/Notes" {
		t.Fatalf("subscribed: %s", got)
	}
	if g := subs["Ghost/Town"]; g.Exists || !g.Subscribed || g.MailboxId != 0 {
		t.Fatalf("Ghost/Town: %v", g)
	}
	if n := subs["Work/Notes"]; !n.Exists || !n.Subscribed {
		t.Fatalf("Work/Notes: %v", n)
	}
	// The full list shows the subscribed non-existent name too, and the
	// flags agree.
	boxes = list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a})
	if g := boxes["Ghost/Town"]; g == nil || g.Exists {
		t.Fatalf("Ghost/Town in LIST: %v", g)
	}
	if boxes["Junk"].Subscribed || !boxes["Junk"].Exists {
		t.Fatalf("Junk: %v", boxes["Junk"])
	}
	// subscribed_only with a pattern, and with special_use_only.
	if got := names(list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a, SubscribedOnly: true, Patterns: []string{"Work/*"}})); got != "Work/Notes" {
		t.Fatalf("subscribed Work/*: %s", got)
	}
	if got := names(list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a, SubscribedOnly: true, SpecialUseOnly: true})); got != "Archive,Drafts,Sent,Trash" {
		t.Fatalf("subscribed special-use: %s", got)
	}
	set("Ghost/Town", false)
	if _, ok := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a})["Ghost/Town"]; ok {
		t.Fatal("Ghost/Town still listed after unsubscribe")
	}
}

func TestCreateMailbox(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "creator"
	info := create(t, c, a, "a/b/c")
	if info.Name != "a/b/c" || !info.Exists || info.MailboxId == 0 {
		t.Fatalf("created %v", info)
	}
	boxes := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a, Patterns: []string{"a*"}})
	if names(boxes) != "a,a/b,a/b/c" {
		t.Fatalf("after create: %s", names(boxes))
	}
	for _, n := range []string{"a", "a/b"} {
		if !boxes[n].Exists || !boxes[n].HasChildren {
			t.Fatalf("superior %s: %v", n, boxes[n])
		}
		selectBox(t, c, a, n) // superiors are real, selectable mailboxes
	}
	// Mail can go to the new mailbox, by deliver and by append.
	var r *mailboxv1.CreateMailboxResponse
	res, err := deliver(t, c, testMessage("to-abc", "x"), &mailboxv1.Recipient{AccountId: a, MailboxName: "a/b/c"})
	if err != nil || res.Results[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK || res.Results[0].Uid != 1 {
		t.Fatalf("deliver to a/b/c: %v %v", res, err)
	}
	ap := mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "a/b/c"}, testMessage("app", "y"))
	if st := status1(t, c, a, "a/b/c"); ap.MailboxId != info.MailboxId || ap.Uid != 2 || ap.UidValidity != st.UidValidity ||
		res.Results[0].UidValidity != st.UidValidity || st.Messages != 2 {
		t.Fatalf("append %v, status %v", ap, st)
	}
	// Deliver to "inbox" lands in INBOX.
	res, err = deliver(t, c, testMessage("lower", "x"), &mailboxv1.Recipient{AccountId: a, MailboxName: "inbox"})
	if err != nil || res.Results[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK || status1(t, c, a, "INBOX").Messages != 1 {
		t.Fatalf("deliver to inbox: %v %v", res, err)
	}
	if boxes["a/b/c"].MailboxId != info.MailboxId {
		t.Fatalf("ids differ: %v %v", boxes["a/b/c"], info)
	}
	// A sibling under an existing superior.
	create(t, c, a, "a/d")
	// Special use on create.
	r, err = c.CreateMailbox(ctxT(t), &mailboxv1.CreateMailboxRequest{AccountId: a, Name: "Everything", SpecialUse: mailboxv1.SpecialUse_SPECIAL_USE_ALL})
	if err != nil || r.Mailbox.SpecialUse != mailboxv1.SpecialUse_SPECIAL_USE_ALL {
		t.Fatalf("create with special use: %v %v", r, err)
	}
	if got := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a, Patterns: []string{"Everything"}, SpecialUseOnly: true}); got["Everything"].GetSpecialUse() != mailboxv1.SpecialUse_SPECIAL_USE_ALL {
		t.Fatalf("Everything: %v", got)
	}
	// Existing names, including INBOX in any case.
	before := snapshot(t, c, a)
	for _, n := range []string{"a/b/c", "a", "a/b", "INBOX", "inbox", "Sent"} {
		_, err := c.CreateMailbox(ctxT(t), &mailboxv1.CreateMailboxRequest{AccountId: a, Name: n})
		wantCode(t, "create existing "+n, err, codes.AlreadyExists)
	}
	_, err = c.CreateMailbox(ctxT(t), &mailboxv1.CreateMailboxRequest{AccountId: a, Name: "x", SpecialUse: 99})
	wantCode(t, "create with unknown special use", err, codes.InvalidArgument)
	unchanged(t, c, a, before, "rejected creates")
	// "inbox/x" lands under INBOX.
	if info := create(t, c, a, "inbox/x"); info.Name != "INBOX/x" {
		t.Fatalf("inbox/x created as %q", info.Name)
	}
	if got := listNames(t, c, a, "INBOX*"); got != "INBOX,INBOX/x" {
		t.Fatalf("INBOX*: %s", got)
	}
}

func TestDeleteMailbox(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "deleter"
	create(t, c, a, "p/c1")
	create(t, c, a, "p/c2")
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "p"}, testMessage("in-p", "x"))
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "p/c1"}, testMessage("in-c1", "y"))
	mustDeliver(t, c, testMessage("inbox", "z"), a)

	before := snapshot(t, c, a)
	for _, n := range []string{"INBOX", "inbox", "InBoX"} {
		_, err := c.DeleteMailbox(ctxT(t), &mailboxv1.DeleteMailboxRequest{AccountId: a, Name: n})
		wantCode(t, "delete "+n, err, codes.FailedPrecondition)
	}
	for _, n := range []string{"missing", "p/missing", "P"} {
		_, err := c.DeleteMailbox(ctxT(t), &mailboxv1.DeleteMailboxRequest{AccountId: a, Name: n})
		wantCode(t, "delete "+n, err, codes.NotFound)
	}
	unchanged(t, c, a, before, "rejected deletes")

	q0, _ := c.GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: a})
	pStatus := status1(t, c, a, "p")
	// Deleting a parent keeps its children; its name lists as non-existent
	// with children.
	if _, err := c.DeleteMailbox(ctxT(t), &mailboxv1.DeleteMailboxRequest{AccountId: a, Name: "p"}); err != nil {
		t.Fatal(err)
	}
	boxes := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a, Patterns: []string{"p*"}})
	if names(boxes) != "p,p/c1,p/c2" {
		t.Fatalf("after delete: %s", names(boxes))
	}
	if p := boxes["p"]; p.Exists || !p.HasChildren || p.MailboxId != 0 {
		t.Fatalf("deleted parent: %v", p)
	}
	if p := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a, Patterns: []string{"%"}})["p"]; p == nil || p.Exists || !p.HasChildren {
		t.Fatalf("%% lists p as %v", p)
	}
	_, err := c.GetStatus(ctxT(t), &mailboxv1.GetStatusRequest{AccountId: a, Name: "p"})
	wantCode(t, "status of deleted", err, codes.NotFound)
	_, err = c.Select(ctxT(t), &mailboxv1.SelectRequest{AccountId: a, Name: "p"})
	wantCode(t, "select deleted", err, codes.NotFound)
	if st := status1(t, c, a, "p/c1"); st.Messages != 1 {
		t.Fatalf("child lost its message: %v", st)
	}
	// The message in p is gone from the quota usage.
	q1, _ := c.GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: a})
	if q1.Messages != q0.Messages-1 || q1.StorageBytes != q0.StorageBytes-pStatus.Size {
		t.Fatalf("quota after delete %v, before %v, p had %d bytes", q1, q0, pStatus.Size)
	}
	// Deleting the non-existent parent again: NotFound.
	_, err = c.DeleteMailbox(ctxT(t), &mailboxv1.DeleteMailboxRequest{AccountId: a, Name: "p"})
	wantCode(t, "delete deleted parent", err, codes.NotFound)

	// Re-creating a deleted name gives a new, empty mailbox with a new
	// UIDVALIDITY.
	re := create(t, c, a, "p")
	st := status1(t, c, a, "p")
	if re.MailboxId == pStatus.MailboxId || st.UidValidity == pStatus.UidValidity || st.Messages != 0 || st.UidNext != 1 {
		t.Fatalf("re-created p: %v, old %v", st, pStatus)
	}
	if ms := fetchAll(t, c, a, re.MailboxId, false); len(ms) != 0 {
		t.Fatalf("re-created p has %d messages", len(ms))
	}
	// The old mailbox id is gone.
	_, err = fetchSet(t, c, &mailboxv1.FetchRequest{AccountId: a, MailboxId: pStatus.MailboxId})
	wantCode(t, "fetch from deleted mailbox id", err, codes.NotFound)

	// A leaf can be deleted; deleting both children of the re-created p
	// leaves p without children.
	for _, n := range []string{"p/c1", "p/c2"} {
		if _, err := c.DeleteMailbox(ctxT(t), &mailboxv1.DeleteMailboxRequest{AccountId: a, Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	boxes = list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a, Patterns: []string{"p*"}})
	if names(boxes) != "p" || boxes["p"].HasChildren || !boxes["p"].Exists {
		t.Fatalf("after deleting children: %v", boxes)
	}
	// Special-use mailboxes other than INBOX may be deleted.
	if _, err := c.DeleteMailbox(ctxT(t), &mailboxv1.DeleteMailboxRequest{AccountId: a, Name: "Junk"}); err != nil {
		t.Fatalf("delete Junk: %v", err)
	}
}

func TestRenameMailbox(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "renamer"
	create(t, c, a, "Work/Projects/Alpha")
	create(t, c, a, "Work/Notes")
	create(t, c, a, "Workshop") // shares a prefix, not a hierarchy
	for i := 0; i < 3; i++ {
		mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Work/Notes"}, testMessage(fmt.Sprintf("n%d", i), "note"))
	}
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Work"}, testMessage("w", "work"))
	if _, err := c.SetSubscribed(ctxT(t), &mailboxv1.SetSubscribedRequest{AccountId: a, Name: "Work/Notes", Subscribed: true}); err != nil {
		t.Fatal(err)
	}
	old := map[string]*mailboxv1.MailboxStatus{}
	oldMsgs := map[string][]*mailboxv1.MessageMeta{}
	for _, n := range []string{"Work", "Work/Notes", "Work/Projects", "Work/Projects/Alpha"} {
		old[n] = status1(t, c, a, n)
		oldMsgs[n] = fetchAll(t, c, a, old[n].MailboxId, true)
	}

	// Rejected renames change nothing.
	before := snapshot(t, c, a)
	for _, tc := range []struct {
		from, to string
		code     codes.Code
	}{
		{"Work", "Work/Sub", codes.InvalidArgument},              // into its own child
		{"Work", "Work/Projects/Alpha/X", codes.InvalidArgument}, // into a deeper inferior
		{"Work", "Workshop", codes.AlreadyExists},
		{"Work/Notes", "Work/Projects", codes.AlreadyExists},
		{"Work", "Work", codes.AlreadyExists},
		{"Work", "INBOX", codes.AlreadyExists},
		{"Work", "inbox", codes.AlreadyExists},
		{"Nope", "Other", codes.NotFound},
		{"Work/Nope", "Other", codes.NotFound},
	} {
		_, err := c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: tc.from, NewName: tc.to})
		wantCode(t, "rename "+tc.from+" to "+tc.to, err, tc.code)
	}
	unchanged(t, c, a, before, "rejected renames")

	// Rename with hierarchy into a new superior that does not exist yet.
	if _, err := c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: "Work", NewName: "Old/Job"}); err != nil {
		t.Fatal(err)
	}
	if got := listNames(t, c, a, "*"); got != "Archive,Drafts,INBOX,Junk,Old,Old/Job,Old/Job/Notes,Old/Job/Projects,Old/Job/Projects/Alpha,Sent,Trash,Workshop" {
		t.Fatalf("after rename: %s", got)
	}
	for n, st := range old {
		nn := "Old/Job" + strings.TrimPrefix(n, "Work")
		now := status1(t, c, a, nn)
		if now.MailboxId != st.MailboxId || now.UidValidity != st.UidValidity || now.UidNext != st.UidNext || now.Messages != st.Messages || now.Size != st.Size {
			t.Fatalf("%s → %s: %v, was %v", n, nn, now, st)
		}
		got := fetchAll(t, c, a, now.MailboxId, true)
		if len(got) != len(oldMsgs[n]) {
			t.Fatalf("%s: %d messages, had %d", nn, len(got), len(oldMsgs[n]))
		}
		for i := range got {
			if got[i].Uid != oldMsgs[n][i].Uid || got[i].BodyId != oldMsgs[n][i].BodyId {
				t.Fatalf("%s message %d: %v, was %v", nn, i, got[i], oldMsgs[n][i])
			}
		}
		_, err := c.GetStatus(ctxT(t), &mailboxv1.GetStatusRequest{AccountId: a, Name: n})
		wantCode(t, "status of old name "+n, err, codes.NotFound)
	}
	// Bodies are still readable.
	id := status1(t, c, a, "Old/Job/Notes").MailboxId
	if b, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: id, Uid: 2}); err != nil || string(b) != string(testMessage("n1", "note")) {
		t.Fatalf("body after rename: %q %v", b, err)
	}
	// The subscription followed.
	subs := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a, SubscribedOnly: true})
	if subs["Old/Job/Notes"] == nil || subs["Work/Notes"] != nil {
		t.Fatalf("subscriptions after rename: %s", names(subs))
	}
	// A leaf rename, then a new mailbox under the old name is a new one.
	if _, err := c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: "Workshop", NewName: "Studio"}); err != nil {
		t.Fatal(err)
	}
	// A special-use mailbox keeps its use when renamed.
	if _, err := c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: "Sent", NewName: "Sent Items"}); err != nil {
		t.Fatal(err)
	}
	if m := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a, Patterns: []string{"Sent*"}}); names(m) != "Sent Items" ||
		m["Sent Items"].SpecialUse != mailboxv1.SpecialUse_SPECIAL_USE_SENT || !m["Sent Items"].Subscribed {
		t.Fatalf("Sent renamed: %v", m)
	}
	nw := create(t, c, a, "Work")
	if nw.MailboxId == old["Work"].MailboxId || status1(t, c, a, "Work").UidValidity == old["Work"].UidValidity {
		t.Fatal("new Work reuses the old one's id or UIDVALIDITY")
	}
}

func TestRenameInbox(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "inboxrenamer"
	create(t, c, a, "INBOX/Child")
	for i := 0; i < 3; i++ {
		mustDeliver(t, c, testMessage(fmt.Sprintf("m%d", i), "body"), a)
	}
	inbox := selectBox(t, c, a, "INBOX")
	if _, err := c.StoreFlags(ctxT(t), &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: inbox.Status.MailboxId, Uids: uidSet(2, 2),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_FLAGGED), Keywords: []string{"Important"}}}); err != nil {
		t.Fatal(err)
	}
	inbox = selectBox(t, c, a, "INBOX")
	msgs := fetchAll(t, c, a, inbox.Status.MailboxId, true)
	q0, _ := c.GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: a})

	if _, err := c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: "inbox", NewName: "Saved/Old Inbox"}); err != nil {
		t.Fatal(err)
	}
	// INBOX stays, empty, with its UIDVALIDITY and a UIDNEXT that does not
	// go back; its inferiors stay where they are.
	after := selectBox(t, c, a, "INBOX")
	if after.Status.MailboxId != inbox.Status.MailboxId || after.Status.UidValidity != inbox.Status.UidValidity ||
		after.Status.Messages != 0 || after.Status.UidNext < inbox.Status.UidNext || len(after.Uids.GetRanges()) != 0 || after.Status.Size != 0 {
		t.Fatalf("INBOX after rename: %v, before %v", after, inbox)
	}
	if after.Status.HighestModseq <= inbox.Status.HighestModseq {
		t.Fatalf("INBOX HIGHESTMODSEQ did not move: %d, was %d", after.Status.HighestModseq, inbox.Status.HighestModseq)
	}
	if got := listNames(t, c, a, "*"); got != "Archive,Drafts,INBOX,INBOX/Child,Junk,Saved,Saved/Old Inbox,Sent,Trash" {
		t.Fatalf("after rename: %s", got)
	}
	// The new mailbox has the messages with their flags and bodies.
	nb := selectBox(t, c, a, "Saved/Old Inbox")
	if nb.Status.Messages != 3 || nb.Status.MailboxId == inbox.Status.MailboxId || nb.Status.Size != inbox.Status.Size {
		t.Fatalf("new mailbox: %v", nb.Status)
	}
	if !sliceHas(nb.Keywords, "Important") {
		t.Fatalf("keywords of the new mailbox: %v", nb.Keywords)
	}
	got := fetchAll(t, c, a, nb.Status.MailboxId, true)
	if len(got) != 3 {
		t.Fatalf("%d messages moved", len(got))
	}
	for i, m := range got {
		if m.BodyId != msgs[i].BodyId || m.Flags.System != msgs[i].Flags.System || m.Size != msgs[i].Size ||
			m.Envelope.GetSubject() != msgs[i].Envelope.GetSubject() || m.Uid >= nb.Status.UidNext {
			t.Fatalf("moved message %d: %v, was %v", i, m, msgs[i])
		}
		b, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: nb.Status.MailboxId, Uid: m.Uid})
		if err != nil || string(b) != string(testMessage(fmt.Sprintf("m%d", i), "body")) {
			t.Fatalf("body %d: %q %v", i, b, err)
		}
	}
	// A session that had INBOX open learns that the messages vanished.
	ch := changes(t, c, &mailboxv1.ChangesRequest{AccountId: a, MailboxId: inbox.Status.MailboxId, SinceModseq: inbox.Status.HighestModseq})
	if v := expand(ch.vanished); fmtUIDs(v) != "[1 2 3]" || len(ch.changed) != 0 {
		t.Fatalf("INBOX changes after rename: vanished %v changed %v", v, ch.changed)
	}
	// Quota usage did not change: the messages only moved.
	q1, _ := c.GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: a})
	if !proto.Equal(q0, q1) {
		t.Fatalf("quota %v, was %v", q1, q0)
	}
	// New mail to INBOX continues above the old UIDs.
	res := mustDeliver(t, c, testMessage("new", "after"), a)
	if res[0].Uid < inbox.Status.UidNext || res[0].UidValidity != inbox.Status.UidValidity {
		t.Fatalf("delivery after rename: uid %d validity %d, UIDNEXT was %d", res[0].Uid, res[0].UidValidity, inbox.Status.UidNext)
	}
	// Renaming INBOX again works the same way; onto an existing name fails.
	_, err := c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: "INBOX", NewName: "Saved/Old Inbox"})
	wantCode(t, "rename INBOX onto existing", err, codes.AlreadyExists)
	if _, err := c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: "INBOX", NewName: "Second"}); err != nil {
		t.Fatal(err)
	}
	if st := status1(t, c, a, "Second"); st.Messages != 1 {
		t.Fatalf("Second: %v", st)
	}
	if st := status1(t, c, a, "INBOX"); st.Messages != 0 || st.UidNext <= res[0].Uid {
		t.Fatalf("INBOX: %v", st)
	}
}

func TestGetStatus(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "statususer"
	var size int64
	for i := 0; i < 4; i++ {
		msg := testMessage(fmt.Sprintf("s%d", i), strings.Repeat("x", 100*i))
		size += int64(len(msg))
		mustDeliver(t, c, msg, a)
	}
	id := selectBox(t, c, a, "INBOX").Status.MailboxId
	storeF := func(uids *mailboxv1.UIDSet, f mailboxv1.Flag) {
		t.Helper()
		if _, err := c.StoreFlags(ctxT(t), &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uids,
			Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: uint32(f)}}); err != nil {
			t.Fatal(err)
		}
	}
	storeF(uidSet(1, 2), mailboxv1.Flag_FLAG_SEEN)
	storeF(uidSet(2, 3), mailboxv1.Flag_FLAG_DELETED)
	st := status1(t, c, a, "inbox")
	sel := selectBox(t, c, a, "INBOX")
	var highest uint64
	for _, m := range fetchAll(t, c, a, id, false) {
		highest = max(highest, m.Modseq)
	}
	if st.Name != "INBOX" || st.MailboxId != id || st.Messages != 4 || st.Unseen != 2 || st.Deleted != 2 || st.UidNext != 5 ||
		st.Size != size || st.UidValidity != sel.Status.UidValidity || st.HighestModseq != highest {
		t.Fatalf("status %v (size %d, highest modseq %d)", st, size, highest)
	}
	if !proto.Equal(st, sel.Status) {
		t.Fatalf("GetStatus %v != Select %v", st, sel.Status)
	}
	if sel.FirstUnseenUid != 3 || fmt.Sprint(sel.Uids.Ranges) != fmt.Sprint(uidSet(1, 4).Ranges) {
		t.Fatalf("select: first unseen %d, uids %v", sel.FirstUnseenUid, sel.Uids)
	}
	// Expunge moves every counter.
	if _, err := c.Expunge(ctxT(t), &mailboxv1.ExpungeRequest{AccountId: a, MailboxId: id}); err != nil {
		t.Fatal(err)
	}
	st2 := status1(t, c, a, "INBOX")
	want := size - int64(len(testMessage("s1", strings.Repeat("x", 100)))) - int64(len(testMessage("s2", strings.Repeat("x", 200))))
	if st2.Messages != 2 || st2.Unseen != 1 || st2.Deleted != 0 || st2.UidNext != 5 || st2.Size != want || st2.HighestModseq <= st.HighestModseq {
		t.Fatalf("status after expunge %v (size %d)", st2, want)
	}
	sel = selectBox(t, c, a, "INBOX")
	if fmt.Sprint(sel.Uids.Ranges) != fmt.Sprint(uidSet(1, 1, 4, 4).Ranges) || sel.FirstUnseenUid != 4 {
		t.Fatalf("select after expunge: %v first unseen %d", sel.Uids, sel.FirstUnseenUid)
	}
	// Missing mailbox.
	_, err := c.GetStatus(ctxT(t), &mailboxv1.GetStatusRequest{AccountId: a, Name: "Nope"})
	wantCode(t, "status of missing", err, codes.NotFound)
}

func sliceHas(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// A mailbox can take the name of its deleted superior: its inferiors then
// move onto names that the renamed mailboxes themselves had.
func TestRenameOntoDeletedSuperior(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "promoter"
	create(t, c, a, "Projects/2024/Q1")
	create(t, c, a, "Projects/2024/2024")
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Projects/2024"}, testMessage("p", "p"))
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Projects/2024/2024"}, testMessage("pp", "pp"))
	for _, n := range []string{"Projects/2024", "Projects/2024/2024", "Projects/2024/Q1"} {
		if _, err := c.SetSubscribed(ctxT(t), &mailboxv1.SetSubscribedRequest{AccountId: a, Name: n, Subscribed: true}); err != nil {
			t.Fatal(err)
		}
	}
	old := map[string]*mailboxv1.MailboxStatus{}
	for _, n := range []string{"Projects/2024", "Projects/2024/2024", "Projects/2024/Q1"} {
		old[n] = status1(t, c, a, n)
	}
	if _, err := c.DeleteMailbox(ctxT(t), &mailboxv1.DeleteMailboxRequest{AccountId: a, Name: "Projects"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: "Projects/2024", NewName: "Projects"}); err != nil {
		t.Fatalf("rename onto the deleted superior: %v", err)
	}
	boxes := list(t, c, &mailboxv1.ListMailboxesRequest{AccountId: a, Patterns: []string{"Projects*"}})
	if names(boxes) != "Projects,Projects/2024,Projects/Q1" {
		t.Fatalf("after rename: %s", names(boxes))
	}
	for from, to := range map[string]string{"Projects/2024": "Projects", "Projects/2024/2024": "Projects/2024", "Projects/2024/Q1": "Projects/Q1"} {
		st := status1(t, c, a, to)
		if st.MailboxId != old[from].MailboxId || st.UidValidity != old[from].UidValidity || st.Messages != old[from].Messages {
			t.Fatalf("%s → %s: %v, was %v", from, to, st, old[from])
		}
		if !boxes[to].Subscribed {
			t.Fatalf("%s lost its subscription: %v", to, boxes[to])
		}
	}
	// The other way round is a rename into its own inferior.
	_, err := c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: a, OldName: "Projects", NewName: "Projects/2024"})
	wantCode(t, "rename into its own inferior", err, codes.InvalidArgument)
}
