package store_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"mailcluster/backend/store"
	"mailcluster/backend/store/storetest"
	"mailcluster/internal/imapenvelope"
	"mailcluster/internal/testenv"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// backfillSite is a fresh database with a store, and psql access to change
// rows behind the store's back.
type backfillSite struct {
	t   *testing.T
	ctx context.Context
	pg  *testenv.Postgres
	db  string
	st  *store.Store
	seq int
}

func newBackfillSite(t *testing.T) *backfillSite {
	pg := testenv.StartPostgres(t)
	dsn := storetest.Database(t, pg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	st, err := store.Open(ctx, store.Config{DSN: dsn, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	db := dsn[strings.Index(dsn, "dbname=")+len("dbname="):]
	db = strings.Fields(db)[0]
	return &backfillSite{t: t, ctx: ctx, pg: pg, db: db, st: st}
}

// msgRef names one stored message.
type msgRef struct {
	account   string
	mailbox   string
	mailboxID int64
	uid       uint32
}

// envelope returns a distinct envelope without its IMAP form.
func testEnvelope(i int) *mailboxv1.Envelope {
	return &mailboxv1.Envelope{
		Date:      fmt.Sprintf("Mon, %d Jan 2024 10:00:00 +0100", i%28+1),
		Subject:   fmt.Sprintf("Grüße Nummer %d (\"quoted\")", i),
		From:      []*mailboxv1.Address{{Name: "Zoë Müller", Mailbox: "zoe", Host: "example.test"}},
		To:        []*mailboxv1.Address{{Mailbox: fmt.Sprintf("user%d", i), Host: "example.test"}},
		Cc:        []*mailboxv1.Address{{Name: "team", GroupStart: true}, {Mailbox: "a", Host: "b.test"}, {GroupEnd: true}},
		InReplyTo: "<parent@example.test>",
		MessageId: fmt.Sprintf("<m%d@example.test>", i),
	}
}

// deliver stores a message with env to each (account, mailbox), as one
// delivery (one envelope, one row per recipient).
func (b *backfillSite) deliver(env *mailboxv1.Envelope, to ...[2]string) []msgRef {
	b.t.Helper()
	b.seq++
	msg := &store.NewMessage{BlobKey: fmt.Sprintf("m/backfill/%d", b.seq), Size: 100, Envelope: env,
		Structure: &mailboxv1.BodyStructure{}, Header: []byte("Subject: x\r\n\r\n")}
	if err := b.st.StartUpload(b.ctx, msg.BlobKey); err != nil {
		b.t.Fatal(err)
	}
	var rcpts []store.Delivery
	for _, r := range to {
		rcpts = append(rcpts, store.Delivery{Account: r[0], Mailbox: r[1]})
	}
	res, err := b.st.Deliver(b.ctx, msg, rcpts)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []msgRef
	for i, r := range res {
		if r.Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK {
			b.t.Fatalf("deliver to %v: %v %s", to[i], r.Status, r.Detail)
		}
		out = append(out, msgRef{account: to[i][0], mailbox: to[i][1], mailboxID: r.MailboxID, uid: r.UID})
	}
	return out
}

// row is a message's stored envelope and MODSEQ.
type row struct {
	env    []byte
	modseq uint64
	flags  uint32
}

func (b *backfillSite) row(m msgRef) row {
	b.t.Helper()
	var out []row
	set := &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: m.uid, End: m.uid}}}
	err := b.st.Fetch(b.ctx, m.account, m.mailboxID, set, store.FetchOptions{Envelope: true}, func(rows []store.FetchRow) error {
		for _, r := range rows {
			out = append(out, row{env: bytes.Clone(r.Envelope), modseq: r.Modseq, flags: r.Flags})
		}
		return nil
	})
	if err != nil || len(out) != 1 {
		b.t.Fatalf("fetch %+v: %v (%d rows)", m, err, len(out))
	}
	return out[0]
}

// setEnvelope writes a message's envelope column directly.
func (b *backfillSite) setEnvelope(m msgRef, env []byte) {
	b.t.Helper()
	if _, err := b.pg.Exec(b.db, fmt.Sprintf(`UPDATE messages SET envelope = '\x%s'::bytea
		WHERE account_id = '%s' AND mailbox_id = %d AND uid = %d`, hex.EncodeToString(env), m.account, m.mailboxID, m.uid)); err != nil {
		b.t.Fatal(err)
	}
}

// modseqs returns the accounts' and mailboxes' highest MODSEQs.
func (b *backfillSite) modseqs(refs []msgRef) map[string]uint64 {
	b.t.Helper()
	out := map[string]uint64{}
	for _, m := range refs {
		ms, err := b.st.AccountModseq(b.ctx, m.account)
		if err != nil {
			b.t.Fatal(err)
		}
		out[m.account] = ms
		st, err := b.st.Status(b.ctx, m.account, m.mailbox)
		if err != nil {
			b.t.Fatal(err)
		}
		out[m.account+"/"+m.mailbox] = st.HighestModseq
	}
	return out
}

func (b *backfillSite) backfill(batch int) (int64, []store.BackfillProgress) {
	b.t.Helper()
	var ps []store.BackfillProgress
	n, err := b.st.BackfillEnvelopes(b.ctx, batch, func(p store.BackfillProgress) { ps = append(ps, p) })
	if err != nil {
		b.t.Fatalf("backfill: %v", err)
	}
	if len(ps) == 0 || ps[len(ps)-1].Updated != n {
		b.t.Fatalf("backfill returned %d, progress %+v", n, ps)
	}
	return n, ps
}

// checkRendered checks that a row's envelope holds want's fields and
// their IMAP form as rendered at ingest.
func checkRendered(t *testing.T, m msgRef, got []byte, want *mailboxv1.Envelope) {
	t.Helper()
	raw := store.EnvelopeIMAP(got)
	if raw == nil {
		t.Errorf("%+v: no IMAP form after the backfill", m)
		return
	}
	if wantRaw := imapenvelope.Encode(want); !bytes.Equal(raw, wantRaw) {
		t.Errorf("%+v: IMAP form\n%s\nwant\n%s", m, raw, wantRaw)
	}
	env := &mailboxv1.Envelope{}
	if err := proto.Unmarshal(got, env); err != nil {
		t.Fatalf("%+v: %v", m, err)
	}
	env.Imap = nil
	if !proto.Equal(env, want) {
		t.Errorf("%+v: fields changed: %v, want %v", m, env, want)
	}
}

// The backfill renders the envelopes of messages stored without their
// IMAP form, across accounts, mailboxes and batches; leaves rendered ones
// byte for byte alone; changes no MODSEQ; and a second run updates nothing.
func TestBackfillEnvelopes(t *testing.T) {
	b := newBackfillSite(t)
	type stored struct {
		ref msgRef
		env *mailboxv1.Envelope
		old bool
	}
	var msgs []stored
	for i := 0; i < 12; i++ {
		env := testEnvelope(i)
		old := i%3 != 0
		in := proto.Clone(env).(*mailboxv1.Envelope)
		if !old {
			in.Imap = imapenvelope.Encode(in)
		}
		to := [][2]string{{fmt.Sprintf("acct-%d", i%4), []string{"INBOX", "Archive"}[i%2]}}
		if i == 5 {
			to = append(to, [2]string{"acct-9", "INBOX"}, [2]string{"acct-0", "Sent"}) // one body, three rows
		}
		for _, r := range b.deliver(in, to...) {
			msgs = append(msgs, stored{ref: r, env: env, old: old})
		}
	}
	// An envelope that is empty (every field NIL) is rendered too.
	for _, r := range b.deliver(&mailboxv1.Envelope{}, [2]string{"acct-1", "Drafts"}) {
		msgs = append(msgs, stored{ref: r, env: &mailboxv1.Envelope{}, old: true})
	}
	var refs []msgRef
	before := map[msgRef]row{}
	wantUpdated := 0
	for _, m := range msgs {
		refs = append(refs, m.ref)
		r := b.row(m.ref)
		before[m.ref] = r
		if got := store.EnvelopeIMAP(r.env) == nil; got != m.old {
			t.Fatalf("%+v: stored without IMAP form %v, want %v", m.ref, got, m.old)
		}
		if m.old {
			wantUpdated++
		}
	}
	modseqs := b.modseqs(refs)

	n, ps := b.backfill(3)
	if n != int64(wantUpdated) {
		t.Fatalf("updated %d rows, want %d", n, wantUpdated)
	}
	last := ps[len(ps)-1]
	if last.Scanned != int64(len(msgs)) || last.Unreadable != 0 || len(ps) != (len(msgs)+2)/3 {
		t.Fatalf("progress %+v (want %d scanned in batches of 3)", ps, len(msgs))
	}
	for _, m := range msgs {
		r := b.row(m.ref)
		if r.modseq != before[m.ref].modseq {
			t.Errorf("%+v: modseq %d → %d", m.ref, before[m.ref].modseq, r.modseq)
		}
		if !m.old {
			if !bytes.Equal(r.env, before[m.ref].env) {
				t.Errorf("%+v: an envelope already rendered was rewritten", m.ref)
			}
			continue
		}
		checkRendered(t, m.ref, r.env, m.env)
	}
	if after := b.modseqs(refs); fmt.Sprint(after) != fmt.Sprint(modseqs) {
		t.Errorf("highest MODSEQs changed: %v → %v", modseqs, after)
	}

	// Again: everything is rendered, nothing is written.
	rendered := map[msgRef][]byte{}
	for _, m := range msgs {
		rendered[m.ref] = b.row(m.ref).env
	}
	if n, ps := b.backfill(0); n != 0 || ps[len(ps)-1].Scanned != int64(len(msgs)) {
		t.Fatalf("second run updated %d, progress %+v", n, ps)
	}
	for _, m := range msgs {
		if !bytes.Equal(b.row(m.ref).env, rendered[m.ref]) {
			t.Errorf("%+v: second run rewrote the envelope", m.ref)
		}
	}
}

// A row whose envelope changes between the backfill's read and its write
// is left as the other writer left it (and rendered by the next run); a
// row whose flags change meanwhile keeps them and still gets its IMAP
// form; an unreadable envelope is counted and left alone.
func TestBackfillEnvelopesConcurrentChange(t *testing.T) {
	b := newBackfillSite(t)
	var refs []msgRef
	envs := map[msgRef]*mailboxv1.Envelope{}
	for i := 0; i < 5; i++ {
		r := b.deliver(testEnvelope(i), [2]string{"acct-x", "INBOX"})[0]
		refs = append(refs, r)
		envs[r] = testEnvelope(i)
	}
	changed, flagged, broken := refs[1], refs[2], refs[4]
	b.setEnvelope(broken, []byte{0xff, 0xff})
	other := testEnvelope(100)
	otherBytes, err := proto.Marshal(other)
	if err != nil {
		t.Fatal(err)
	}
	hooked := 0
	defer store.SetBackfillHook(func() {
		hooked++
		if hooked > 1 {
			return
		}
		b.setEnvelope(changed, otherBytes)
		set := &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: flagged.uid, End: flagged.uid}}}
		if _, err := b.st.StoreFlags(b.ctx, flagged.account, flagged.mailboxID, set, mailboxv1.StoreMode_STORE_MODE_ADD,
			&mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_SEEN)}, 0); err != nil {
			t.Error(err)
		}
	})()
	flaggedBefore := b.row(flagged)

	n, ps := b.backfill(0)
	if n != 3 || hooked != 1 {
		t.Fatalf("updated %d (want 3: not the changed nor the unreadable row), hook ran %d times", n, hooked)
	}
	if p := ps[len(ps)-1]; p.Scanned != 5 || p.Unreadable != 1 {
		t.Fatalf("progress %+v", p)
	}
	if got := b.row(changed).env; !bytes.Equal(got, otherBytes) {
		t.Fatalf("the concurrently changed envelope was overwritten: %x", got)
	}
	if got := b.row(broken).env; !bytes.Equal(got, []byte{0xff, 0xff}) {
		t.Fatalf("the unreadable envelope was changed: %x", got)
	}
	f := b.row(flagged)
	if f.flags&uint32(mailboxv1.Flag_FLAG_SEEN) == 0 || f.modseq <= flaggedBefore.modseq {
		t.Fatalf("the concurrent flag change was lost: %+v (before %+v)", f, flaggedBefore)
	}
	checkRendered(t, flagged, f.env, envs[flagged])
	for _, r := range []msgRef{refs[0], refs[3]} {
		checkRendered(t, r, b.row(r).env, envs[r])
	}

	// The next run renders the changed row from its new content.
	if n, ps := b.backfill(0); n != 1 || ps[len(ps)-1].Unreadable != 1 {
		t.Fatalf("second run updated %d (want 1), progress %+v", n, ps)
	}
	checkRendered(t, changed, b.row(changed).env, other)
	if n, _ := b.backfill(0); n != 0 {
		t.Fatalf("third run updated %d", n)
	}
}

// Interrupted between batches, the backfill reports what it wrote, and a
// second run finishes the rest.
func TestBackfillEnvelopesResume(t *testing.T) {
	b := newBackfillSite(t)
	var refs []msgRef
	for i := 0; i < 7; i++ {
		refs = append(refs, b.deliver(testEnvelope(i), [2]string{fmt.Sprintf("acct-%d", i%2), "INBOX"})...)
	}
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	n, err := b.st.BackfillEnvelopes(ctx, 2, func(store.BackfillProgress) { cancel() })
	if !errors.Is(err, context.Canceled) || n != 2 {
		t.Fatalf("interrupted run: %d, %v (want 2 and context.Canceled)", n, err)
	}
	if n, _ := b.backfill(2); n != 5 {
		t.Fatalf("second run updated %d, want 5", n)
	}
	for i, r := range refs {
		checkRendered(t, r, b.row(r).env, testEnvelope(i))
	}
}

// The backfill runs while messages are delivered (to several accounts at
// once) and flagged across whole mailboxes: nobody fails, and a later run
// renders what arrived behind it.
func TestBackfillEnvelopesWhileServing(t *testing.T) {
	b := newBackfillSite(t)
	accounts := []string{"acct-0", "acct-1", "acct-2", "acct-3"}
	for i := 0; i < 60; i++ {
		b.deliver(testEnvelope(i), [2]string{accounts[i%4], "INBOX"})
	}
	mailboxID := map[string]int64{}
	for _, a := range accounts {
		id, err := b.st.MailboxID(b.ctx, a, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		mailboxID[a] = id
	}
	done := make(chan struct{})
	errs := make(chan error, 3)
	var ops atomic.Int64 // writes done
	// Deliveries, each to two accounts (locked in order).
	go func() {
		var err error
		for i := 0; err == nil; i++ {
			select {
			case <-done:
				errs <- nil
				return
			default:
			}
			key := fmt.Sprintf("m/live/%d", i)
			if err = b.st.StartUpload(b.ctx, key); err == nil {
				_, err = b.st.Deliver(b.ctx, &store.NewMessage{BlobKey: key, Size: 10, Envelope: testEnvelope(i),
					Structure: &mailboxv1.BodyStructure{}}, []store.Delivery{{Account: accounts[i%4]}, {Account: accounts[(i+1)%4]}})
			}
			ops.Add(1)
		}
		errs <- err
	}()
	for w := 0; w < 2; w++ {
		// Flags on every message of a mailbox, as STORE 1:* sets them.
		go func() {
			var err error
			for i := w; err == nil; i += 2 {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				a := accounts[i%4]
				mode := []mailboxv1.StoreMode{mailboxv1.StoreMode_STORE_MODE_ADD, mailboxv1.StoreMode_STORE_MODE_REMOVE}[i/4%2]
				_, err = b.st.StoreFlags(b.ctx, a, mailboxID[a], &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: 1, End: 0}}},
					mode, &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_FLAGGED)}, 0)
				ops.Add(1)
			}
			errs <- err
		}()
	}
	// Between batches, wait for a few writes, so that they interleave.
	_, err := b.st.BackfillEnvelopes(b.ctx, 7, func(store.BackfillProgress) {
		for n, end := ops.Load(), time.Now().Add(time.Second); ops.Load() < n+3 && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
	})
	close(done)
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Errorf("a writer failed during the backfill: %v", err)
		}
	}
	if err != nil {
		t.Fatalf("backfill: %v", err)
	}
	b.backfill(0) // what arrived behind the first run
	if n, _ := b.backfill(0); n != 0 {
		t.Fatalf("a run after that updated %d", n)
	}
	for _, a := range accounts {
		err := b.st.Fetch(b.ctx, a, mailboxID[a], nil, store.FetchOptions{Envelope: true}, func(rows []store.FetchRow) error {
			for _, r := range rows {
				if store.EnvelopeIMAP(r.Envelope) == nil {
					t.Errorf("%s uid %d: not rendered", a, r.UID)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
