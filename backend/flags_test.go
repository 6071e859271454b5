package backend

// Message operations through the gRPC API: StoreFlags (system flags,
// keywords, MODSEQ, UNCHANGEDSINCE), GetBody with set_seen, Copy, Move,
// Expunge, Changes (CONDSTORE/QRESYNC) and UID set semantics.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

const (
	fSeen     = uint32(mailboxv1.Flag_FLAG_SEEN)
	fAnswered = uint32(mailboxv1.Flag_FLAG_ANSWERED)
	fFlagged  = uint32(mailboxv1.Flag_FLAG_FLAGGED)
	fDeleted  = uint32(mailboxv1.Flag_FLAG_DELETED)
	fDraft    = uint32(mailboxv1.Flag_FLAG_DRAFT)
)

// changeSet is the collected output of a Changes stream.
type changeSet struct {
	status    *mailboxv1.MailboxStatus
	changed   []*mailboxv1.MessageMeta
	vanished  *mailboxv1.UIDSet
	truncated bool
}

func changesErr(t *testing.T, c mailboxv1.MailboxClient, r *mailboxv1.ChangesRequest) (*changeSet, error) {
	t.Helper()
	st, err := c.Changes(ctxT(t), r)
	if err != nil {
		return nil, err
	}
	out := &changeSet{vanished: &mailboxv1.UIDSet{}}
	for i := 0; ; i++ {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			if i == 0 {
				t.Fatal("Changes sent nothing")
			}
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if i == 0 {
			out.status, out.truncated = resp.Status, resp.ExpungeLogTruncated
			if out.status == nil {
				t.Fatal("first Changes response without status")
			}
		}
		out.changed = append(out.changed, resp.Changed...)
		if resp.Vanished != nil {
			out.vanished.Ranges = append(out.vanished.Ranges, resp.Vanished.Ranges...)
		}
	}
}

func changes(t *testing.T, c mailboxv1.MailboxClient, r *mailboxv1.ChangesRequest) *changeSet {
	t.Helper()
	cs, err := changesErr(t, c, r)
	if err != nil {
		t.Fatalf("changes: %v", err)
	}
	return cs
}

// expand lists the UIDs of a set of closed ranges (no "*").
func expand(s *mailboxv1.UIDSet) []uint32 {
	out := []uint32{}
	for _, r := range s.GetRanges() {
		for u := r.Start; u <= r.End; u++ {
			out = append(out, u)
		}
	}
	return out
}

func storeFlags(t *testing.T, c mailboxv1.MailboxClient, r *mailboxv1.StoreFlagsRequest) *mailboxv1.StoreFlagsResponse {
	t.Helper()
	resp, err := c.StoreFlags(ctxT(t), r)
	if err != nil {
		t.Fatalf("store %v: %v", r, err)
	}
	return resp
}

// byUID indexes messages by UID.
func byUID(ms []*mailboxv1.MessageMeta) map[uint32]*mailboxv1.MessageMeta {
	out := map[uint32]*mailboxv1.MessageMeta{}
	for _, m := range ms {
		out[m.Uid] = m
	}
	return out
}

// fillInbox delivers n test messages to account's INBOX and returns its id.
func fillInbox(t *testing.T, c mailboxv1.MailboxClient, account string, n int) int64 {
	t.Helper()
	for i := 0; i < n; i++ {
		mustDeliver(t, c, testMessage(fmt.Sprintf("msg%d", i+1), fmt.Sprintf("body %d", i+1)), account)
	}
	return selectBox(t, c, account, "INBOX").Status.MailboxId
}

func TestStoreFlags(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "flagger"
	id := fillInbox(t, c, a, 3)
	req := func(mode mailboxv1.StoreMode, uids *mailboxv1.UIDSet, sys uint32, kw ...string) *mailboxv1.StoreFlagsRequest {
		return &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uids, Mode: mode, Flags: &mailboxv1.Flags{System: sys, Keywords: kw}}
	}
	add, remove, replace := mailboxv1.StoreMode_STORE_MODE_ADD, mailboxv1.StoreMode_STORE_MODE_REMOVE, mailboxv1.StoreMode_STORE_MODE_REPLACE
	check := func(step string, want map[uint32]string) map[uint32]*mailboxv1.MessageMeta {
		t.Helper()
		ms := byUID(fetchAll(t, c, a, id, false))
		for uid, w := range want {
			m := ms[uid]
			if got := fmt.Sprintf("%d %v", m.Flags.System, m.Flags.Keywords); got != w {
				t.Fatalf("%s: uid %d flags %s, want %s", step, uid, got, w)
			}
		}
		return ms
	}
	m0 := check("delivered", map[uint32]string{1: "0 []", 2: "0 []", 3: "0 []"})
	hm0 := selectBox(t, c, a, "INBOX").Status.HighestModseq

	// ADD system flags and keywords.
	r := storeFlags(t, c, req(add, uidSet(1, 2), fSeen|fFlagged, "Work", "$Label1"))
	if len(r.Messages) != 2 || len(r.Modified.GetRanges()) != 0 {
		t.Fatalf("add: %v", r)
	}
	for _, m := range r.Messages {
		if m.Flags.System != fSeen|fFlagged || fmt.Sprint(m.Flags.Keywords) != "[$Label1 Work]" || m.Modseq <= m0[m.Uid].Modseq || m.Modseq != r.Modseq {
			t.Fatalf("add response %v (was modseq %d)", m, m0[m.Uid].Modseq)
		}
	}
	m1 := check("add", map[uint32]string{1: "5 [$Label1 Work]", 2: "5 [$Label1 Work]", 3: "0 []"})
	if m1[1].Modseq != r.Messages[0].Modseq || m1[1].Modseq != m1[2].Modseq || m1[3].Modseq != m0[3].Modseq {
		t.Fatalf("modseqs after add: %v", m1)
	}
	sel := selectBox(t, c, a, "INBOX")
	if sel.Status.HighestModseq != m1[1].Modseq || sel.Status.HighestModseq <= hm0 {
		t.Fatalf("HIGHESTMODSEQ %d after add, message modseq %d, before %d", sel.Status.HighestModseq, m1[1].Modseq, hm0)
	}
	if fmt.Sprint(sel.Keywords) != "[$Label1 Work]" || sel.Status.Unseen != 1 || sel.FirstUnseenUid != 3 {
		t.Fatalf("select after add: keywords %v unseen %d first %d", sel.Keywords, sel.Status.Unseen, sel.FirstUnseenUid)
	}

	// A store that changes nothing keeps MODSEQs (message and mailbox)
	// and still reports the current flags.
	r = storeFlags(t, c, req(add, uidSet(1, 2), fSeen, "Work"))
	if len(r.Messages) != 2 || r.Messages[0].Modseq != m1[1].Modseq || r.Messages[0].Flags.System != fSeen|fFlagged || r.Modseq != 0 {
		t.Fatalf("no-op add: %v", r)
	}
	storeFlags(t, c, req(remove, uidSet(3, 3), fDeleted, "Nothing"))
	storeFlags(t, c, req(replace, uidSet(3, 3), 0))
	m2 := check("no-op", map[uint32]string{1: "5 [$Label1 Work]", 3: "0 []"})
	for uid := range m1 {
		if m2[uid].Modseq != m1[uid].Modseq {
			t.Fatalf("no-op store moved modseq of %d: %d → %d", uid, m1[uid].Modseq, m2[uid].Modseq)
		}
	}
	if s := selectBox(t, c, a, "INBOX"); s.Status.HighestModseq != sel.Status.HighestModseq {
		t.Fatalf("no-op store moved HIGHESTMODSEQ %d → %d", sel.Status.HighestModseq, s.Status.HighestModseq)
	}

	// REMOVE one flag and one keyword; only the messages that change get
	// a new MODSEQ.
	r = storeFlags(t, c, req(remove, uidSet(1, 3), fFlagged, "Work"))
	if len(r.Messages) != 3 {
		t.Fatalf("remove: %v", r)
	}
	m3 := check("remove", map[uint32]string{1: "1 [$Label1]", 2: "1 [$Label1]", 3: "0 []"})
	if m3[1].Modseq <= m2[1].Modseq || m3[3].Modseq != m2[3].Modseq {
		t.Fatalf("modseqs after remove: %v, before %v", m3, m2)
	}

	// REPLACE sets exactly the given flags; \Recent is never stored.
	storeFlags(t, c, req(replace, uidSet(2, 3), fAnswered|fDraft|uint32(mailboxv1.Flag_FLAG_RECENT), "Zeta", "Alpha", "Zeta"))
	m4 := check("replace", map[uint32]string{1: "1 [$Label1]", 2: "18 [Alpha Zeta]", 3: "18 [Alpha Zeta]"})
	if m4[2].Modseq != m4[3].Modseq || m4[2].Modseq <= m3[2].Modseq || m4[1].Modseq != m3[1].Modseq {
		t.Fatalf("modseqs after replace: %v", m4)
	}
	// REPLACE with nothing clears.
	storeFlags(t, c, req(replace, uidSet(3, 3), 0))
	check("clear", map[uint32]string{2: "18 [Alpha Zeta]", 3: "0 []"})
	// Keywords are case-sensitive atoms kept as given.
	storeFlags(t, c, req(add, uidSet(3, 3), 0, "work"))
	check("lower-case keyword", map[uint32]string{3: "0 [work]"})

	// The FLAGS list of the mailbox has every keyword stored in it, and
	// nothing that was only removed.
	storeFlags(t, c, req(remove, uidSet(1, 3), fSeen, "NeverSet"))
	sel = selectBox(t, c, a, "INBOX")
	for _, k := range []string{"$Label1", "Work", "Alpha", "Zeta", "work"} {
		if !sliceHas(sel.Keywords, k) {
			t.Fatalf("select keywords %v lack %s", sel.Keywords, k)
		}
	}
	if sliceHas(sel.Keywords, "NeverSet") {
		t.Fatalf("select keywords %v include a keyword that was only removed", sel.Keywords)
	}
	// A keyword delivered with the message is listed too.
	if _, err := deliver(t, c, testMessage("kw", "x"), &mailboxv1.Recipient{AccountId: a, Flags: &mailboxv1.Flags{System: fSeen, Keywords: []string{"$Junk"}}}); err != nil {
		t.Fatal(err)
	}
	sel = selectBox(t, c, a, "INBOX")
	if !sliceHas(sel.Keywords, "$Junk") {
		t.Fatalf("delivered keyword missing: %v", sel.Keywords)
	}
	if m := byUID(fetchAll(t, c, a, id, false))[4]; m.Flags.System != fSeen || fmt.Sprint(m.Flags.Keywords) != "[$Junk]" {
		t.Fatalf("delivered with flags: %v", m)
	}
	// Messages in other mailboxes are not touched by a store on this one.
	other := create(t, c, a, "Other")
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Other"}, testMessage("o", "o"))
	storeFlags(t, c, req(add, uidSet(1, 0), fDeleted))
	if m := fetchAll(t, c, a, other.MailboxId, false)[0]; m.Flags.System != 0 {
		t.Fatalf("store leaked into another mailbox: %v", m)
	}
}

func TestStoreUnchangedSince(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "condstore"
	id := fillInbox(t, c, a, 3)
	m0 := byUID(fetchAll(t, c, a, id, false))
	// Message 2 changes after the client's view.
	view := max(m0[1].Modseq, m0[2].Modseq, m0[3].Modseq)
	storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(2, 2),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fFlagged}})
	m1 := byUID(fetchAll(t, c, a, id, false))

	r := storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 3), UnchangedSince: view,
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fSeen}})
	if fmt.Sprint(expand(r.Modified)) != "[2]" {
		t.Fatalf("modified %v", r.Modified)
	}
	if fmtUIDs(uidsOf(r.Messages)) != "[1 3]" {
		t.Fatalf("stored messages %v", r.Messages)
	}
	m2 := byUID(fetchAll(t, c, a, id, false))
	if m2[2].Flags.System != fFlagged || m2[2].Modseq != m1[2].Modseq {
		t.Fatalf("modified message was changed: %v", m2[2])
	}
	for _, u := range []uint32{1, 3} {
		if m2[u].Flags.System != fSeen || m2[u].Modseq <= m1[u].Modseq {
			t.Fatalf("message %d: %v", u, m2[u])
		}
	}
	// UNCHANGEDSINCE at or above a message's MODSEQ lets it change.
	r = storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(2, 2), UnchangedSince: m2[2].Modseq,
		Mode: mailboxv1.StoreMode_STORE_MODE_REPLACE, Flags: &mailboxv1.Flags{System: fAnswered}})
	if len(r.Modified.GetRanges()) != 0 || len(r.Messages) != 1 || r.Messages[0].Flags.System != fAnswered {
		t.Fatalf("store at modseq: %v", r)
	}
	// Every message newer than UNCHANGEDSINCE: nothing changes at all.
	hm := selectBox(t, c, a, "INBOX").Status.HighestModseq
	before := snapshot(t, c, a)
	r = storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 0), UnchangedSince: 1,
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fDeleted}})
	if fmtUIDs(expand(r.Modified)) != "[1 2 3]" || len(r.Messages) != 0 {
		t.Fatalf("all modified: %v", r)
	}
	unchanged(t, c, a, before, "store with an old UNCHANGEDSINCE")
	if got := selectBox(t, c, a, "INBOX").Status.HighestModseq; got != hm {
		t.Fatalf("HIGHESTMODSEQ %d → %d", hm, got)
	}
}

func TestGetBodySetSeen(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "reader"
	msg := testMessage("read me", "content")
	id := fillInbox(t, c, a, 0)
	mustDeliver(t, c, msg, a)
	m0 := fetchAll(t, c, a, id, false)[0]
	storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 1),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fFlagged, Keywords: []string{"K"}}})
	m0 = fetchAll(t, c, a, id, false)[0]

	// PEEK leaves the flags alone.
	b, first, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: id, Uid: 1})
	if err != nil || string(b) != string(msg) || first.Flags != nil || first.TotalSize != int64(len(msg)) {
		t.Fatalf("peek: %q %v %v", b, first, err)
	}
	if m := fetchAll(t, c, a, id, false)[0]; !proto.Equal(m, m0) {
		t.Fatalf("peek changed %v → %v", m0, m)
	}
	// set_seen sets \Seen and returns the new flags and MODSEQ.
	b, first, err = body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: id, Uid: 1, SetSeen: true,
		Section: mailboxv1.BodySection_BODY_SECTION_TEXT})
	if err != nil || string(b) != "content" {
		t.Fatalf("set_seen body %q %v", b, err)
	}
	if first.Flags.GetSystem() != fSeen|fFlagged || fmt.Sprint(first.Flags.GetKeywords()) != "[K]" || first.Modseq <= m0.Modseq {
		t.Fatalf("set_seen first chunk: %v (modseq before %d)", first, m0.Modseq)
	}
	m1 := fetchAll(t, c, a, id, false)[0]
	if m1.Flags.System != fSeen|fFlagged || m1.Modseq != first.Modseq {
		t.Fatalf("after set_seen: %v", m1)
	}
	if st := status1(t, c, a, "INBOX"); st.Unseen != 0 || st.HighestModseq != m1.Modseq {
		t.Fatalf("status after set_seen: %v", st)
	}
	// Already seen: nothing changes and no flags are returned.
	_, first, err = body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: id, Uid: 1, SetSeen: true})
	if err != nil || first.Flags != nil {
		t.Fatalf("second set_seen: %v %v", first, err)
	}
	if m := fetchAll(t, c, a, id, false)[0]; m.Modseq != m1.Modseq {
		t.Fatalf("second set_seen moved modseq %d → %d", m1.Modseq, m.Modseq)
	}
	// A missing UID: NotFound, and no flag change anywhere.
	before := snapshot(t, c, a)
	_, _, err = body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: id, Uid: 9, SetSeen: true})
	wantCode(t, "body of missing uid", err, codes.NotFound)
	unchanged(t, c, a, before, "GetBody of a missing UID")
}

func TestCopy(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "copier"
	id := fillInbox(t, c, a, 4)
	storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(3, 3),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fFlagged | fSeen, Keywords: []string{"Copied"}}})
	src := byUID(fetchAll(t, c, a, id, true))
	arch := selectBox(t, c, a, "Archive")
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Archive"}, testMessage("already", "there"))
	q0, _ := c.GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: a})

	r, err := c.Copy(ctxT(t), &mailboxv1.CopyRequest{AccountId: a, MailboxId: id, Uids: uidSet(3, 3, 1, 1, 9, 20), DestName: "Archive"})
	if err != nil {
		t.Fatal(err)
	}
	if r.DestUidValidity != arch.Status.UidValidity || fmtUIDs(r.SourceUids) != "[1 3]" || fmtUIDs(r.DestUids) != "[2 3]" {
		t.Fatalf("COPYUID %v (Archive UIDVALIDITY %d)", r, arch.Status.UidValidity)
	}
	dst := byUID(fetchAll(t, c, a, arch.Status.MailboxId, true))
	for i, su := range r.SourceUids {
		s, d := src[su], dst[r.DestUids[i]]
		if d == nil || d.BodyId != s.BodyId || !proto.Equal(d.Flags, s.Flags) || d.Size != s.Size || d.InternalDate != s.InternalDate ||
			!proto.Equal(d.Envelope, s.Envelope) || string(d.Header) != string(s.Header) {
			t.Fatalf("copy of %d: %v, source %v", su, d, s)
		}
		b, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: arch.Status.MailboxId, Uid: d.Uid})
		if err != nil || string(b) != string(testMessage(fmt.Sprintf("msg%d", su), fmt.Sprintf("body %d", su))) {
			t.Fatalf("copied body %d: %q %v", su, b, err)
		}
	}
	if s := selectBox(t, c, a, "Archive"); s.Status.Messages != 3 || s.Status.UidNext != 4 || !sliceHas(s.Keywords, "Copied") {
		t.Fatalf("Archive after copy: %v", s)
	}
	// The source is unchanged.
	if now := byUID(fetchAll(t, c, a, id, true)); len(now) != 4 || !proto.Equal(now[3], src[3]) {
		t.Fatalf("source changed by copy: %v", now)
	}
	// Usage counts the copies (COPY shares bodies, but quota is logical).
	q1, _ := c.GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: a})
	if q1.Messages != q0.Messages+2 || q1.StorageBytes != q0.StorageBytes+src[1].Size+src[3].Size {
		t.Fatalf("quota after copy %v, before %v", q1, q0)
	}
	// Copy into the same mailbox appends new UIDs.
	r, err = c.Copy(ctxT(t), &mailboxv1.CopyRequest{AccountId: a, MailboxId: id, Uids: uidSet(4, 0), DestName: "INBOX"})
	if err != nil || fmtUIDs(r.SourceUids) != "[4]" || fmtUIDs(r.DestUids) != "[5]" {
		t.Fatalf("self copy: %v %v", r, err)
	}

	before := snapshot(t, c, a)
	// Nothing to copy: OK, empty COPYUID, nothing changed.
	for _, set := range []*mailboxv1.UIDSet{{}, uidSet(50, 60)} {
		r, err = c.Copy(ctxT(t), &mailboxv1.CopyRequest{AccountId: a, MailboxId: id, Uids: set, DestName: "Archive"})
		if err != nil || len(r.SourceUids) != 0 || len(r.DestUids) != 0 {
			t.Fatalf("empty copy %v: %v %v", set, r, err)
		}
	}
	// A missing destination: NotFound (the frontend answers TRYCREATE).
	_, err = c.Copy(ctxT(t), &mailboxv1.CopyRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 0), DestName: "Nope"})
	wantCode(t, "copy to missing", err, codes.NotFound)
	_, err = c.Move(ctxT(t), &mailboxv1.MoveRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 0), DestName: "Nope"})
	wantCode(t, "move to missing", err, codes.NotFound)
	unchanged(t, c, a, before, "empty and failed copies")
}

func TestMove(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "mover"
	id := fillInbox(t, c, a, 4)
	src := byUID(fetchAll(t, c, a, id, true))
	inbox0 := selectBox(t, c, a, "INBOX")
	trash := selectBox(t, c, a, "Trash")
	q0, _ := c.GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: a})

	r, err := c.Move(ctxT(t), &mailboxv1.MoveRequest{AccountId: a, MailboxId: id, Uids: uidSet(2, 3), DestName: "Trash"})
	if err != nil {
		t.Fatal(err)
	}
	if r.DestUidValidity != trash.Status.UidValidity || fmtUIDs(r.SourceUids) != "[2 3]" || fmtUIDs(r.DestUids) != "[1 2]" || r.Modseq <= inbox0.Status.HighestModseq {
		t.Fatalf("move: %v", r)
	}
	inbox := selectBox(t, c, a, "INBOX")
	if fmtUIDs(expand(inbox.Uids)) != "[1 4]" || inbox.Status.Messages != 2 || inbox.Status.HighestModseq != r.Modseq ||
		inbox.Status.Size != src[1].Size+src[4].Size {
		t.Fatalf("source after move: %v", inbox)
	}
	moved := fetchAll(t, c, a, trash.Status.MailboxId, true)
	if len(moved) != 2 || moved[0].BodyId != src[2].BodyId || moved[1].BodyId != src[3].BodyId || moved[0].Envelope.GetSubject() != "msg2" {
		t.Fatalf("moved: %v", moved)
	}
	if b, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: trash.Status.MailboxId, Uid: 2}); err != nil || string(b) != string(testMessage("msg3", "body 3")) {
		t.Fatalf("moved body: %q %v", b, err)
	}
	// The source reports the moved UIDs as vanished.
	ch := changes(t, c, &mailboxv1.ChangesRequest{AccountId: a, MailboxId: id, SinceModseq: inbox0.Status.HighestModseq})
	if fmtUIDs(expand(ch.vanished)) != "[2 3]" || len(ch.changed) != 0 {
		t.Fatalf("changes after move: %v %v", ch.vanished, ch.changed)
	}
	// A move does not change the usage.
	q1, _ := c.GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: a})
	if !proto.Equal(q0, q1) {
		t.Fatalf("quota after move %v, before %v", q1, q0)
	}
	// Moving what is not there: OK, nothing changes.
	before := snapshot(t, c, a)
	r, err = c.Move(ctxT(t), &mailboxv1.MoveRequest{AccountId: a, MailboxId: id, Uids: uidSet(2, 3), DestName: "Trash"})
	if err != nil || len(r.SourceUids) != 0 {
		t.Fatalf("empty move: %v %v", r, err)
	}
	unchanged(t, c, a, before, "empty move")
	// A move within the mailbox gives the message a new UID; usage stays.
	r, err = c.Move(ctxT(t), &mailboxv1.MoveRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 1), DestName: "INBOX"})
	if err != nil || fmtUIDs(r.SourceUids) != "[1]" || fmtUIDs(r.DestUids) != "[5]" || r.DestUidValidity != inbox.Status.UidValidity {
		t.Fatalf("move within INBOX: %v %v", r, err)
	}
	if got := fmtUIDs(expand(selectBox(t, c, a, "INBOX").Uids)); got != "[4 5]" {
		t.Fatalf("INBOX after moving within: %s", got)
	}
	if q2, _ := c.GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: a}); !proto.Equal(q0, q2) {
		t.Fatalf("quota after move within %v, before %v", q2, q0)
	}
}

func TestExpungeAndUIDsNeverReused(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "expunger"
	id := fillInbox(t, c, a, 5)
	storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(2, 2, 4, 5),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fDeleted}})
	hm := selectBox(t, c, a, "INBOX").Status.HighestModseq

	// UID EXPUNGE removes only \Deleted messages in the set.
	r, err := c.Expunge(ctxT(t), &mailboxv1.ExpungeRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 2, 5, 5)})
	if err != nil || fmtUIDs(r.Expunged) != "[2 5]" || r.Modseq <= hm {
		t.Fatalf("uid expunge: %v %v", r, err)
	}
	if got := fmtUIDs(expand(selectBox(t, c, a, "INBOX").Uids)); got != "[1 3 4]" {
		t.Fatalf("after uid expunge: %s", got)
	}
	// Nothing \Deleted in the set: nothing expunged, nothing changes.
	before := snapshot(t, c, a)
	r, err = c.Expunge(ctxT(t), &mailboxv1.ExpungeRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 3)})
	if err != nil || len(r.Expunged) != 0 {
		t.Fatalf("expunge of undeleted: %v %v", r, err)
	}
	unchanged(t, c, a, before, "expunge without \\Deleted messages")
	// EXPUNGE of all \Deleted.
	r, err = c.Expunge(ctxT(t), &mailboxv1.ExpungeRequest{AccountId: a, MailboxId: id})
	if err != nil || fmtUIDs(r.Expunged) != "[4]" {
		t.Fatalf("expunge: %v %v", r, err)
	}
	st := status1(t, c, a, "INBOX")
	if st.Messages != 2 || st.UidNext != 6 || st.HighestModseq != r.Modseq {
		t.Fatalf("status after expunge: %v", st)
	}
	// The highest UID was expunged; new mail still gets a higher UID, in
	// INBOX and through append.
	if res := mustDeliver(t, c, testMessage("later", "x"), a); res[0].Uid != 6 {
		t.Fatalf("delivery after expunge got uid %d", res[0].Uid)
	}
	storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(6, 6),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fDeleted}})
	if r, err := c.Expunge(ctxT(t), &mailboxv1.ExpungeRequest{AccountId: a, MailboxId: id}); err != nil || fmtUIDs(r.Expunged) != "[6]" {
		t.Fatalf("expunge 6: %v %v", r, err)
	}
	if ap := mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "INBOX"}, testMessage("appended", "y")); ap.Uid != 7 {
		t.Fatalf("append after expunge got uid %d", ap.Uid)
	}
	// Copy into a mailbox whose highest UID was expunged.
	if cr, err := c.Copy(ctxT(t), &mailboxv1.CopyRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 1), DestName: "INBOX"}); err != nil || fmtUIDs(cr.DestUids) != "[8]" {
		t.Fatalf("copy after expunge: %v %v", cr, err)
	}
	if got := fmtUIDs(expand(selectBox(t, c, a, "INBOX").Uids)); got != "[1 3 7 8]" {
		t.Fatalf("final uids %s", got)
	}
}

func TestChanges(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "resync"
	id := fillInbox(t, c, a, 5)
	s0 := selectBox(t, c, a, "INBOX").Status

	// Nothing happened since the current HIGHESTMODSEQ. The status is
	// Select's without the unseen and deleted counts.
	ch := changes(t, c, &mailboxv1.ChangesRequest{AccountId: a, MailboxId: id, SinceModseq: s0.HighestModseq})
	noCounts := proto.CloneOf(s0)
	noCounts.Unseen, noCounts.Deleted = 0, 0
	if s0.Unseen == 0 {
		t.Fatal("Select's status counts no unseen message")
	}
	if len(ch.changed) != 0 || len(ch.vanished.Ranges) != 0 || !proto.Equal(ch.status, noCounts) || ch.truncated {
		t.Fatalf("no changes: %+v", ch)
	}
	// Since 0: every message.
	ch = changes(t, c, &mailboxv1.ChangesRequest{AccountId: a, MailboxId: id})
	if fmtUIDs(uidsOf(ch.changed)) != "[1 2 3 4 5]" || len(ch.vanished.Ranges) != 0 {
		t.Fatalf("since 0: %v", ch.changed)
	}

	storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(1, 1, 3, 4),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fDeleted}})
	storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(2, 2),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{Keywords: []string{"Seen2", "$Label1"}}})
	if _, err := c.Expunge(ctxT(t), &mailboxv1.ExpungeRequest{AccountId: a, MailboxId: id, Uids: uidSet(3, 4)}); err != nil {
		t.Fatal(err)
	}
	mustDeliver(t, c, testMessage("new", "new"), a)
	s1 := selectBox(t, c, a, "INBOX").Status

	ch = changes(t, c, &mailboxv1.ChangesRequest{AccountId: a, MailboxId: id, SinceModseq: s0.HighestModseq})
	s1.Unseen, s1.Deleted = 0, 0
	if !proto.Equal(ch.status, s1) {
		t.Fatalf("status %v, select %v", ch.status, s1)
	}
	if fmtUIDs(uidsOf(ch.changed)) != "[1 2 6]" || fmtUIDs(expand(ch.vanished)) != "[3 4]" {
		t.Fatalf("changes: changed %v vanished %v", uidsOf(ch.changed), ch.vanished)
	}
	cur := byUID(fetchAll(t, c, a, id, false))
	if kw := cur[2].Flags.GetKeywords(); len(kw) != 2 {
		t.Fatalf("keywords of 2: %q", kw)
	}
	for _, m := range ch.changed {
		if !proto.Equal(m.Flags, cur[m.Uid].Flags) || m.Modseq != cur[m.Uid].Modseq || m.Modseq <= s0.HighestModseq || m.Envelope != nil {
			t.Fatalf("changed %v, current %v", m, cur[m.Uid])
		}
	}
	// known_uids restricts VANISHED, not the changed messages.
	for _, tc := range []struct {
		known *mailboxv1.UIDSet
		want  string
	}{
		{uidSet(1, 3), "[3]"},
		{uidSet(4, 0), "[4]"}, // "4:*": * is the highest UID in use (6)
		{uidSet(5, 100), "[]"},
		{uidSet(1, 1, 4, 4), "[4]"},
		{&mailboxv1.UIDSet{}, "[3 4]"},
	} {
		ch = changes(t, c, &mailboxv1.ChangesRequest{AccountId: a, MailboxId: id, SinceModseq: s0.HighestModseq, KnownUids: tc.known})
		if got := fmtUIDs(expand(ch.vanished)); got != tc.want || len(ch.changed) != 3 {
			t.Fatalf("known %v: vanished %s, want %s; changed %v", tc.known, got, tc.want, uidsOf(ch.changed))
		}
	}
	// Since a MODSEQ between the store and the expunge: only the later
	// changes.
	mid := cur[2].Modseq
	ch = changes(t, c, &mailboxv1.ChangesRequest{AccountId: a, MailboxId: id, SinceModseq: mid})
	if fmtUIDs(uidsOf(ch.changed)) != "[6]" || fmtUIDs(expand(ch.vanished)) != "[3 4]" {
		t.Fatalf("since %d: changed %v vanished %v", mid, uidsOf(ch.changed), ch.vanished)
	}
	// Changes in another mailbox do not show here.
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Drafts"}, testMessage("draft", "d"))
	ch = changes(t, c, &mailboxv1.ChangesRequest{AccountId: a, MailboxId: id, SinceModseq: s1.HighestModseq})
	if len(ch.changed) != 0 || len(ch.vanished.Ranges) != 0 {
		t.Fatalf("other mailbox leaked: %+v", ch)
	}
	// Unknown mailbox.
	_, err := changesErr(t, c, &mailboxv1.ChangesRequest{AccountId: a, MailboxId: id + 1000})
	wantCode(t, "changes of unknown mailbox", err, codes.NotFound)
}

func TestUIDSets(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "uidsets"
	id := fillInbox(t, c, a, 6)
	storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(2, 2, 5, 5),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fDeleted}})
	if _, err := c.Expunge(ctxT(t), &mailboxv1.ExpungeRequest{AccountId: a, MailboxId: id}); err != nil {
		t.Fatal(err)
	}
	// Present: 1 3 4 6.
	for _, tc := range []struct {
		set  *mailboxv1.UIDSet
		want string
	}{
		{nil, "[1 3 4 6]"},                      // empty: every message
		{&mailboxv1.UIDSet{}, "[1 3 4 6]"},      // empty: every message
		{uidSet(1, 0), "[1 3 4 6]"},             // 1:*
		{uidSet(4, 0), "[4 6]"},                 // 4:*
		{uidSet(6, 0), "[6]"},                   // 6:*
		{uidSet(100, 0), "[6]"},                 // n:* with n above the highest: the highest
		{uidSet(4294967295, 0), "[6]"},          // *:* (the largest UID as start)
		{uidSet(4, 2), "[3 4]"},                 // reversed
		{uidSet(2, 2), "[]"},                    // expunged
		{uidSet(5, 5, 2, 2), "[]"},              // expunged
		{uidSet(7, 100), "[]"},                  // above
		{uidSet(6, 6, 1, 1, 3, 4), "[1 3 4 6]"}, // unordered
		{uidSet(1, 3, 2, 4, 3, 3), "[1 3 4]"},   // overlapping: each once
		{uidSet(1, 1, 2, 2, 3, 3), "[1 3]"},     // adjacent
	} {
		ms, err := fetchSet(t, c, &mailboxv1.FetchRequest{AccountId: a, MailboxId: id, Uids: tc.set})
		if err != nil {
			t.Fatalf("fetch %v: %v", tc.set, err)
		}
		if got := fmtUIDs(uidsOf(ms)); got != tc.want {
			t.Errorf("fetch %v = %s, want %s", tc.set, got, tc.want)
		}
		// Search UID agrees with fetch (an empty set is not a valid UID key).
		if len(tc.set.GetRanges()) > 0 {
			sr, err := c.Search(ctxT(t), &mailboxv1.SearchRequest{AccountId: a, MailboxId: id, Criteria: &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_UID, Uids: tc.set}})
			if err != nil || fmtUIDs(sr.Uids) != tc.want {
				t.Errorf("search uid %v = %v %v, want %s", tc.set, sr.GetUids(), err, tc.want)
			}
		}
	}
	// StoreFlags with an empty set stores nothing (unlike Fetch).
	before := snapshot(t, c, a)
	r := storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: &mailboxv1.UIDSet{},
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fSeen}})
	if len(r.Messages) != 0 {
		t.Fatalf("store with empty set: %v", r)
	}
	unchanged(t, c, a, before, "store with an empty set")
	// n:* applies to the highest message for store too.
	r = storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(100, 0),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fSeen}})
	if fmtUIDs(uidsOf(r.Messages)) != "[6]" {
		t.Fatalf("store 100:* = %v", uidsOf(r.Messages))
	}
	// "*" in an empty mailbox matches nothing.
	empty := selectBox(t, c, a, "Junk").Status.MailboxId
	for _, set := range []*mailboxv1.UIDSet{uidSet(1, 0), uidSet(100, 0)} {
		ms, err := fetchSet(t, c, &mailboxv1.FetchRequest{AccountId: a, MailboxId: empty, Uids: set})
		if err != nil || len(ms) != 0 {
			t.Fatalf("fetch %v in empty mailbox: %v %v", set, ms, err)
		}
		r := storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: empty, Uids: set,
			Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fSeen}})
		if len(r.Messages) != 0 {
			t.Fatalf("store %v in empty mailbox: %v", set, r)
		}
	}
	// Fetch in batches keeps UID order and loses nothing.
	for i := 0; i < 5; i++ {
		mustDeliver(t, c, testMessage(fmt.Sprintf("more%d", i), "m"), a)
	}
	st, err := c.Fetch(ctxT(t), &mailboxv1.FetchRequest{AccountId: a, MailboxId: id, BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	var all []uint32
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Messages) > 2 || len(resp.Messages) == 0 {
			t.Fatalf("batch of %d", len(resp.Messages))
		}
		all = append(all, uidsOf(resp.Messages)...)
	}
	if fmtUIDs(all) != "[1 3 4 6 7 8 9 10 11]" {
		t.Fatalf("batched fetch %v", all)
	}
	// CHANGEDSINCE.
	hm := selectBox(t, c, a, "INBOX").Status.HighestModseq
	storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(3, 3),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: fAnswered}})
	ms, err := fetchSet(t, c, &mailboxv1.FetchRequest{AccountId: a, MailboxId: id, ChangedSince: hm})
	if err != nil || fmtUIDs(uidsOf(ms)) != "[3]" {
		t.Fatalf("changedsince: %v %v", ms, err)
	}
}

// A STORE that changes nothing is answered from one read: it returns the
// flags as they are, takes no new MODSEQ, and does not wait for the
// account's lock, which a changing STORE or a delivery holds until commit.
func TestStoreUnchangedTakesNoLock(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "nochange"
	id := fillInbox(t, c, a, 3)
	uids := func(u ...uint32) *mailboxv1.UIDSet {
		s := &mailboxv1.UIDSet{}
		for _, x := range u {
			s.Ranges = append(s.Ranges, &mailboxv1.UIDRange{Start: x, End: x})
		}
		return s
	}
	store := func(ctx context.Context, mode mailboxv1.StoreMode, set *mailboxv1.UIDSet, sys uint32, kw ...string) (*mailboxv1.StoreFlagsResponse, error) {
		return c.StoreFlags(ctx, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: set, Mode: mode,
			Flags: &mailboxv1.Flags{System: sys, Keywords: kw}})
	}
	add, remove := mailboxv1.StoreMode_STORE_MODE_ADD, mailboxv1.StoreMode_STORE_MODE_REMOVE
	r, err := store(ctxT(t), add, uids(1, 2), fSeen, "$Done")
	if err != nil || r.Modseq == 0 {
		t.Fatalf("first STORE: %v %v", r, err)
	}
	hm := selectBox(t, c, a, "INBOX").Status.HighestModseq

	// Another transaction holds the account row, as a STORE or delivery
	// in progress does.
	conn, err := pgx.Connect(ctxT(t), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctxT(t), "SELECT 1 FROM accounts WHERE account_id = $1 FOR UPDATE", a); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		mode mailboxv1.StoreMode
		set  *mailboxv1.UIDSet
		sys  uint32
		kw   []string
	}{
		{"+FLAGS already set", add, uids(1, 2), fSeen, []string{"$Done"}},
		{"-FLAGS not set", remove, uids(1, 3), fFlagged, []string{"$Other"}},
		{"a UID that does not exist among them", add, uids(2, 99), fSeen, nil},
	} {
		r, err := store(short, tc.mode, tc.set, tc.sys, tc.kw...)
		if err != nil {
			t.Fatalf("%s: %v (did it wait for the account's lock?)", tc.name, err)
		}
		if r.Modseq != 0 || len(r.Modified.GetRanges()) != 0 || len(r.Messages) == 0 {
			t.Errorf("%s: %v, want the messages' flags and no MODSEQ", tc.name, r)
		}
		for _, m := range r.Messages {
			want := "0 []"
			if m.Uid <= 2 {
				want = fmt.Sprintf("%d [$Done]", fSeen)
			}
			if got := fmt.Sprintf("%d %v", m.Flags.System, m.Flags.Keywords); got != want {
				t.Errorf("%s: uid %d flags %s, want %s", tc.name, m.Uid, got, want)
			}
		}
	}
	if err := tx.Rollback(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := selectBox(t, c, a, "INBOX").Status.HighestModseq; got != hm {
		t.Errorf("HIGHESTMODSEQ %d after STOREs that changed nothing, want %d", got, hm)
	}
	// A STORE that changes one message of its set still changes it.
	r, err = store(ctxT(t), add, uids(1, 3), fSeen)
	if err != nil || r.Modseq <= hm {
		t.Fatalf("changing STORE: %v %v", r, err)
	}
	ms := byUID(fetchAll(t, c, a, id, false))
	if ms[3].Flags.System != fSeen || ms[3].Modseq != r.Modseq || ms[1].Modseq == r.Modseq {
		t.Errorf("after +FLAGS \\Seen on 1 and 3: %v", ms)
	}
}

// A STORE of one message without new keywords (the short way, storeOne)
// does all a STORE does: one new MODSEQ for the message and the mailbox,
// a Changes entry and a Watch event; one that adds a keyword, or no
// longer changes anything, still answers right.
func TestStoreOneMessage(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "single"
	id := fillInbox(t, c, a, 2)
	before := selectBox(t, c, a, "INBOX").Status.HighestModseq
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Send(&mailboxv1.WatchRequest{Add: []*mailboxv1.WatchAccount{{AccountId: a, SinceModseq: before}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the subscription is in place before the change
	one := func(mode mailboxv1.StoreMode, sys uint32, kw ...string) *mailboxv1.StoreFlagsResponse {
		return storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(2, 2), Mode: mode,
			Flags: &mailboxv1.Flags{System: sys, Keywords: kw}})
	}
	r := one(mailboxv1.StoreMode_STORE_MODE_ADD, fFlagged)
	if r.Modseq <= before || len(r.Messages) != 1 || r.Messages[0].Uid != 2 || r.Messages[0].Flags.System != fFlagged || r.Messages[0].Modseq != r.Modseq {
		t.Fatalf("store of one message: %v (HIGHESTMODSEQ before %d)", r, before)
	}
	if hm := selectBox(t, c, a, "INBOX").Status.HighestModseq; hm != r.Modseq {
		t.Fatalf("HIGHESTMODSEQ %d, want %d", hm, r.Modseq)
	}
	cs := changes(t, c, &mailboxv1.ChangesRequest{AccountId: a, MailboxId: id, SinceModseq: before})
	if len(cs.changed) != 1 || cs.changed[0].Uid != 2 || cs.changed[0].Modseq != r.Modseq || cs.changed[0].Flags.System != fFlagged {
		t.Fatalf("changes since %d: %v", before, cs.changed)
	}
	for {
		ev, err := w.Recv()
		if err != nil {
			t.Fatalf("no Watch event for the store: %v", err)
		}
		if ev.AccountId == a && ev.Modseq == r.Modseq {
			break
		}
	}
	// Removing a keyword the message lacks along with a flag it has.
	r2 := one(mailboxv1.StoreMode_STORE_MODE_REMOVE, fFlagged, "Absent")
	if r2.Modseq != r.Modseq+1 || r2.Messages[0].Flags.System != 0 {
		t.Fatalf("remove: %v", r2)
	}
	// Adding a keyword goes the general way and lists it in the mailbox.
	r3 := one(mailboxv1.StoreMode_STORE_MODE_ADD, fSeen, "Fresh")
	if r3.Modseq != r2.Modseq+1 || r3.Messages[0].Flags.System != fSeen || fmt.Sprint(r3.Messages[0].Flags.Keywords) != "[Fresh]" {
		t.Fatalf("add keyword: %v", r3)
	}
	if sel := selectBox(t, c, a, "INBOX"); !sliceHas(sel.Keywords, "Fresh") || sel.Status.HighestModseq != r3.Modseq {
		t.Fatalf("after adding a keyword: keywords %v, HIGHESTMODSEQ %d", sel.Keywords, sel.Status.HighestModseq)
	}
	// Nothing to change: the flags as they are, no MODSEQ.
	if r4 := one(mailboxv1.StoreMode_STORE_MODE_ADD, fSeen); r4.Modseq != 0 || r4.Messages[0].Modseq != r3.Modseq {
		t.Fatalf("no-op: %v", r4)
	}
	// The two single-message changes above went the short way.
	ones := func() uint64 {
		var m dto.Metric
		if err := e.backends[0].metrics.postgres.WithLabelValues("StoreFlagsOne", "ok").(prometheus.Histogram).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	if n := ones(); n != 2 {
		t.Errorf("%v single-message STOREs by primary key, want 2", n)
	}
	// So does a body read that sets \Seen, and it answers the new flags.
	_, first, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: id, Uid: 1, SetSeen: true})
	if err != nil || first.GetFlags().GetSystem()&fSeen == 0 || first.GetModseq() != r3.Modseq+1 {
		t.Fatalf("body read setting \\Seen: %v, %v", first, err)
	}
	if n := ones(); n != 3 {
		t.Errorf("%v single-message STOREs by primary key after a body read setting \\Seen, want 3", n)
	}
}
