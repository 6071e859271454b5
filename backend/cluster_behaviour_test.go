package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mailcluster/backend/store"
	"mailcluster/internal/testenv"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Two backends deliver into one mailbox at once: every acknowledged message
// gets its own UID, UIDs are dense and ascending, nothing is lost.
func TestConcurrentDeliveriesTwoBackends(t *testing.T) {
	e := newEnv(t, 2, nil)
	clients := []mailboxv1.MailboxClient{e.client(0), e.client(1)}
	const workers, per = 8, 15
	var (
		mu   sync.Mutex
		uids []uint32
		wg   sync.WaitGroup
		errs = make(chan error, workers)
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				resp, err := deliver(t, clients[w%2], testMessage(fmt.Sprintf("w%d-%d", w, i), "body"), rcpt("shared"), rcpt(fmt.Sprintf("own-%d", w)))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				uids = append(uids, resp.Results[0].Uid)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	for i, u := range uids {
		if u != uint32(i+1) {
			t.Fatalf("acknowledged UIDs not dense and unique: position %d has %d", i, u)
		}
	}
	sel := selectBox(t, clients[1], "shared", "INBOX")
	if sel.Status.Messages != workers*per || sel.Status.UidNext != workers*per+1 {
		t.Fatalf("status %+v", sel.Status)
	}
	ms := fetchAll(t, clients[0], "shared", sel.Status.MailboxId, true)
	subjects := map[string]bool{}
	var lastModseq uint64
	for i, m := range ms {
		if m.Uid != uint32(i+1) {
			t.Fatalf("fetch order: %d at %d", m.Uid, i)
		}
		subjects[m.Envelope.Subject] = true
		if m.Modseq <= lastModseq {
			t.Fatalf("MODSEQ not increasing with UID: %d after %d", m.Modseq, lastModseq)
		}
		lastModseq = m.Modseq
	}
	if len(subjects) != workers*per {
		t.Fatalf("%d distinct messages, want %d", len(subjects), workers*per)
	}
}

// A watch on one backend sees a delivery made through the other.
func TestWatchAcrossBackends(t *testing.T) {
	e := newEnv(t, 2, nil)
	a, b := e.client(0), e.client(1)
	mustDeliver(t, b, testMessage("before", "x"), "watched") // account exists, MODSEQ > 1
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := a.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Since 0: the current state is reported at once.
	if err := w.Send(&mailboxv1.WatchRequest{Add: []*mailboxv1.WatchAccount{{AccountId: "watched"}, {AccountId: "other"}}}); err != nil {
		t.Fatal(err)
	}
	ev, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if ev.AccountId != "watched" || ev.Modseq < 2 {
		t.Fatalf("initial event %+v", ev)
	}
	seen := ev.Modseq
	res := mustDeliver(t, b, testMessage("after", "y"), "watched")
	for {
		ev, err = w.Recv()
		if err != nil {
			t.Fatalf("no event for a delivery through the other backend: %v", err)
		}
		if ev.AccountId == "watched" && ev.Modseq > seen {
			break
		}
	}
	inbox := selectBox(t, a, "watched", "INBOX")
	if ev.MailboxId != 0 && ev.MailboxId != inbox.Status.MailboxId {
		t.Fatalf("event mailbox %d, INBOX is %d", ev.MailboxId, inbox.Status.MailboxId)
	}
	if ev.Appended != nil {
		t.Fatalf("an event from another backend's notification names the appended message: %+v", ev.Appended)
	}
	if res[0].Uid != 2 {
		t.Fatalf("uid %d", res[0].Uid)
	}
	// After removing the account, its changes are no longer sent; changes of
	// other watched accounts still are. (An event of a change before the
	// removal may still be on its way: the catch-up after the backend's
	// LISTEN connection opened reports the account as a whole.)
	removedAt := ev.Modseq
	if err := w.Send(&mailboxv1.WatchRequest{Remove: []string{"watched"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the removal arrive before the next change
	mustDeliver(t, b, testMessage("unwatched", "z"), "watched")
	mustDeliver(t, b, testMessage("other", "z"), "other")
	for {
		ev, err = w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.AccountId == "watched" && ev.Modseq > removedAt {
			t.Fatalf("event for a removed account: %+v", ev)
		}
		if ev.AccountId == "other" && ev.Modseq > 1 {
			break
		}
	}
}

// A delivery through the watched backend itself reports the message it
// appended, with its UID, flags and MODSEQ, so that the frontend needs no
// Changes call; the same change coming back through PostgreSQL is not sent
// again.
func TestWatchReportsOwnDeliveries(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	mustDeliver(t, c, testMessage("before", "x"), "watched")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Send(&mailboxv1.WatchRequest{Add: []*mailboxv1.WatchAccount{{AccountId: "watched"}}}); err != nil {
		t.Fatal(err)
	}
	events := make(chan *mailboxv1.WatchEvent, 100)
	go func() {
		for {
			ev, err := w.Recv()
			if err != nil {
				close(events)
				return
			}
			events <- ev
		}
	}()
	next := func(what string) *mailboxv1.WatchEvent {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended waiting for %s", what)
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s", what)
			return nil
		}
	}
	first := next("initial event")
	// The initial event and the first delivery's notification may both come:
	// take what arrives until things are quiet.
	for quiet := false; !quiet; {
		select {
		case ev := <-events:
			first = ev
		case <-time.After(300 * time.Millisecond):
			quiet = true
		}
	}
	inbox := selectBox(t, c, "watched", "INBOX")
	flags := &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_FLAGGED), Keywords: []string{"$Label1", "work"}}
	res := mustDeliverTo(t, c, testMessage("after", "y"), &mailboxv1.Recipient{AccountId: "watched", Flags: flags})
	ev := next("event for the delivery")
	for ev.Modseq <= first.Modseq { // a late one of the state before, on a slow machine
		ev = next("event for the delivery")
	}
	m := ev.Appended
	if ev.Modseq != first.Modseq+1 || ev.MailboxId != inbox.Status.MailboxId || m == nil ||
		m.Uid != res[0].Uid || m.Modseq != ev.Modseq || m.Flags.GetSystem() != flags.System ||
		!slices.Equal(m.Flags.GetKeywords(), flags.Keywords) {
		t.Fatalf("event for a delivery through this backend: %+v (appended %+v); want modseq %d, mailbox %d, UID %d, flags %+v",
			ev, m, first.Modseq+1, inbox.Status.MailboxId, res[0].Uid, flags)
	}
	// The change's notification through PostgreSQL arrives too, and is
	// dropped as covered: the next event is the next change's.
	time.Sleep(300 * time.Millisecond)
	mustDeliver(t, c, testMessage("next", "z"), "watched")
	if ev := next("event for the next delivery"); ev.Modseq != first.Modseq+2 {
		t.Fatalf("next event %+v; want MODSEQ %d", ev, first.Modseq+2)
	}
}

// An older change of another mailbox that reaches the backend after a
// newer local delivery (its notification comes through PostgreSQL, the
// delivery's at once) is still reported: the receiver must look at that
// mailbox. Driven through the hub, since the order cannot be forced
// through PostgreSQL.
func TestWatchReportsOlderChangeOfAnotherMailbox(t *testing.T) {
	h := newHub()
	w := newWatcher()
	h.add(w, "acct", 10)
	h.publish(store.Change{Account: "acct", Modseq: 12, MailboxID: 1,
		Appended: &mailboxv1.MessageMeta{Uid: 5, Modseq: 12}}) // local delivery
	if evs := w.take(); len(evs) != 1 || evs[0].MailboxId != 1 || evs[0].Appended == nil {
		t.Fatalf("events %+v", evs)
	}
	h.publish(store.Change{Account: "acct", Modseq: 11, MailboxID: 2}) // older, another mailbox
	h.publish(store.Change{Account: "acct", Modseq: 12, MailboxID: 1}) // the delivery's notification
	evs := w.take()
	if len(evs) != 1 || evs[0].MailboxId != 2 || evs[0].Modseq != 11 {
		t.Fatalf("events %+v; want the change of mailbox 2 alone", evs)
	}
	// One delivery to two mailboxes: both are reported.
	h.publish(store.Change{Account: "acct", Modseq: 13, MailboxID: 1})
	h.publish(store.Change{Account: "acct", Modseq: 13, MailboxID: 2})
	if evs := w.take(); len(evs) != 1 || evs[0].MailboxId != 0 || evs[0].Modseq != 13 {
		t.Fatalf("events %+v; want one for any mailbox at 13", evs)
	}
	// A watcher follows at most maxWatchBoxes mailboxes one by one: the
	// next one turns into an event for all of them.
	for i := range maxWatchBoxes + 1 {
		h.publish(store.Change{Account: "acct", Modseq: uint64(100 + i), MailboxID: int64(1000 + i)})
		evs := w.take()
		if i == maxWatchBoxes {
			if len(evs) != 1 || evs[0].MailboxId != 0 || evs[0].Modseq != uint64(100+i) {
				t.Fatalf("event %d: %+v; want one for any mailbox", i, evs)
			}
			if n := len(w.boxes["acct"]); n != 0 {
				t.Fatalf("%d mailboxes still followed one by one", n)
			}
			break
		}
		if len(evs) != 1 || evs[0].MailboxId != int64(1000+i) {
			t.Fatalf("event %d: %+v", i, evs)
		}
	}
	h.publish(store.Change{Account: "acct", Modseq: 99, MailboxID: 1})
	if evs := w.take(); len(evs) != 0 {
		t.Fatalf("events %+v; want none", evs)
	}

	// An account-wide event covers what came before.
	h.publish(store.Change{Account: "acct", Modseq: 200})
	h.publish(store.Change{Account: "acct", Modseq: 199, MailboxID: 3})
	if evs := w.take(); len(evs) != 1 || evs[0].Modseq != 200 || evs[0].MailboxId != 0 {
		t.Fatalf("events %+v; want none", evs)
	}
}

// s3Objects lists the bucket's keys through backend i's blob store.
func s3Objects(t *testing.T, s *Server) []string {
	t.Helper()
	var keys []string
	if err := s.svc.blobs.List(context.Background(), "", func(k string, _ time.Time) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// A failed S3 PUT answers UNAVAILABLE and leaves nothing visible; nothing is
// left in the bucket after a sweep.
func TestFailedPutLeavesNothing(t *testing.T) {
	e := newEnv(t, 0, nil)
	relay := testenv.NewRelay(t, e.s3.Endpoint)
	cfg := testConfig(e)
	cfg.S3Endpoint = relay.Addr
	cfg.S3Timeout = 5 * time.Second
	srv := e.start(cfg)
	c := e.client(0)
	mustDeliver(t, c, testMessage("ok", "first"), "acct")
	relay.Break()
	_, err := deliver(t, c, testMessage("fails", "second"), rcpt("acct"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("deliver with S3 down: %v, want Unavailable", err)
	}
	relay.Restore()
	sel := selectBox(t, c, "acct", "INBOX")
	if sel.Status.Messages != 1 || sel.Status.UidNext != 2 {
		t.Fatalf("a failed delivery became visible: %+v", sel.Status)
	}
	if _, err := srv.Sweep(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if keys := s3Objects(t, srv); len(keys) != 1 {
		t.Fatalf("bucket holds %d objects after sweep, want 1: %v", len(keys), keys)
	}
}

// A transaction that aborts after the body was written leaves nothing
// visible, and the sweeper removes the body.
func TestAbortedTransactionLeavesNothing(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	mustDeliver(t, c, testMessage("ok", "first"), "acct")
	// Make every insert of a message with this subject fail inside the
	// delivery transaction.
	db := dbName(e.dsn)
	if _, err := e.pg.Exec(db, `CREATE FUNCTION fail_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.search_header LIKE '%Subject: poison%' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER fail_poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION fail_poison();`); err != nil {
		t.Fatal(err)
	}
	_, err := deliver(t, c, testMessage("poison", "second"), rcpt("acct"), rcpt("acct2"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("deliver with failing transaction: %v, want Unavailable", err)
	}
	if st := selectBox(t, c, "acct", "INBOX").Status; st.Messages != 1 || st.UidNext != 2 {
		t.Fatalf("aborted delivery visible: %+v", st)
	}
	if st := selectBox(t, c, "acct2", "INBOX").Status; st.Messages != 0 {
		t.Fatalf("aborted delivery visible for the second recipient: %+v", st)
	}
	if n := len(s3Objects(t, e.backends[0])); n != 2 {
		t.Fatalf("%d objects before sweep, want 2 (one referenced, one leaked)", n)
	}
	// A sweep with the normal grace period keeps the fresh upload (its
	// delivery might still be running) ...
	if _, err := e.backends[0].Sweep(context.Background(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := len(s3Objects(t, e.backends[0])); n != 2 {
		t.Fatalf("%d objects after a sweep within the grace period, want 2", n)
	}
	// ... and one past it removes it.
	if _, err := e.backends[0].Sweep(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if n := len(s3Objects(t, e.backends[0])); n != 1 {
		t.Fatalf("%d objects after sweep, want 1", n)
	}
	got, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "acct", MailboxId: selectBox(t, c, "acct", "INBOX").Status.MailboxId, Uid: 1})
	if err != nil || len(got) == 0 {
		t.Fatalf("referenced body gone: %v", err)
	}
}

// Sweeping with no grace while deliveries run never deletes a body that a
// delivery acknowledged: such a delivery fails instead.
func TestSweepRacingDeliveries(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	srv := e.backends[0]
	stop := make(chan struct{})
	var sweeps sync.WaitGroup
	sweeps.Add(1)
	go func() {
		defer sweeps.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			srv.Sweep(context.Background(), 5*time.Millisecond)
		}
	}()
	var acked []uint32
	failed := 0
	for i := 0; i < 60; i++ {
		resp, err := deliver(t, c, testMessage(fmt.Sprintf("m%d", i), "body"), rcpt("racer"))
		if err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("deliver: %v", err)
			}
			failed++
			continue
		}
		acked = append(acked, resp.Results[0].Uid)
	}
	close(stop)
	sweeps.Wait()
	box := selectBox(t, c, "racer", "INBOX").Status.MailboxId
	for _, uid := range acked {
		if _, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "racer", MailboxId: box, Uid: uid}); err != nil {
			t.Fatalf("acknowledged message %d lost its body: %v", uid, err)
		}
	}
	if _, err := srv.Sweep(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if n := len(s3Objects(t, srv)); n != len(acked) {
		t.Fatalf("%d objects for %d acknowledged messages (%d failed)", n, len(acked), failed)
	}
}

// Expunging the last reference to a body lets the sweeper delete it; a body
// still referenced by a copy stays.
func TestExpungeSweepsOnlyUnreferencedBodies(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	srv := e.backends[0]
	ctx := ctxT(t)
	mustDeliver(t, c, testMessage("one", "1"), "acct")
	mustDeliver(t, c, testMessage("two", "2"), "acct")
	inbox := selectBox(t, c, "acct", "INBOX").Status.MailboxId
	if _, err := c.Copy(ctx, &mailboxv1.CopyRequest{AccountId: "acct", MailboxId: inbox, Uids: uidSet(1, 1), DestName: "Archive"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StoreFlags(ctx, &mailboxv1.StoreFlagsRequest{AccountId: "acct", MailboxId: inbox, Uids: uidSet(1, 2),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_DELETED)}}); err != nil {
		t.Fatal(err)
	}
	x, err := c.Expunge(ctx, &mailboxv1.ExpungeRequest{AccountId: "acct", MailboxId: inbox})
	if err != nil || len(x.Expunged) != 2 {
		t.Fatalf("expunge %v %v", x, err)
	}
	if _, err := srv.Sweep(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := len(s3Objects(t, srv)); n != 1 {
		t.Fatalf("%d objects, want 1 (the copied body)", n)
	}
	arch := selectBox(t, c, "acct", "Archive").Status.MailboxId
	got, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "acct", MailboxId: arch, Uid: 1})
	if err != nil || len(got) == 0 {
		t.Fatalf("copy lost its body: %v", err)
	}
	if _, err := c.DeleteMailbox(ctx, &mailboxv1.DeleteMailboxRequest{AccountId: "acct", Name: "Archive"}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Sweep(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := len(s3Objects(t, srv)); n != 0 {
		t.Fatalf("%d objects after deleting the last reference", n)
	}
}

// With PostgreSQL unreachable the backend answers UNAVAILABLE, never
// internal text.
func TestPostgresDownIsUnavailable(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	mustDeliver(t, c, testMessage("ok", "1"), "acct")
	if _, err := e.pg.Exec("postgres", "ALTER DATABASE "+dbName(e.dsn)+" ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pg.Exec("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"+dbName(e.dsn)+"'"); err != nil {
		t.Fatal(err)
	}
	defer e.pg.Exec("postgres", "ALTER DATABASE "+dbName(e.dsn)+" ALLOW_CONNECTIONS true")
	_, err := c.Select(ctxT(t), &mailboxv1.SelectRequest{AccountId: "acct", Name: "INBOX"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("select with postgres down: %v", err)
	}
	if s, _ := status.FromError(err); s.Message() != "storage temporarily unavailable" {
		t.Fatalf("message leaks detail: %q", s.Message())
	}
	_, err = deliver(t, c, testMessage("down", "2"), rcpt("acct"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("deliver with postgres down: %v", err)
	}
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		t.Fatal("not a status")
	}
	_ = io.EOF
}

func dbName(dsn string) string {
	var name string
	for _, f := range splitFields(dsn) {
		if len(f) > 7 && f[:7] == "dbname=" {
			name = f[7:]
		}
	}
	return name
}

func splitFields(s string) []string {
	var out []string
	cur := ""
	for _, r := range s {
		if r == ' ' {
			if cur != "" {
				out = append(out, cur)
			}
			cur = ""
			continue
		}
		cur += string(r)
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

// Pruning the expunge log makes Changes report that expunges may have been
// forgotten, and keeps reporting those that were not.
func TestExpungeLogRetention(t *testing.T) {
	e := newEnv(t, 1, func(c *Config) { c.ExpungeLog = time.Hour })
	c := e.client(0)
	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		mustDeliver(t, c, testMessage(fmt.Sprint(i), "x"), "acct")
	}
	box := selectBox(t, c, "acct", "INBOX").Status
	expunge := func(uid uint32) {
		if _, err := c.StoreFlags(ctx, &mailboxv1.StoreFlagsRequest{AccountId: "acct", MailboxId: box.MailboxId, Uids: uidSet(uid, uid),
			Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_DELETED)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Expunge(ctx, &mailboxv1.ExpungeRequest{AccountId: "acct", MailboxId: box.MailboxId}); err != nil {
			t.Fatal(err)
		}
	}
	expunge(1)
	// Age the first expunge beyond the retention, then make a second one.
	if _, err := e.pg.Exec(dbName(e.dsn), "UPDATE expunged SET expunged_at = now() - interval '2 hours'"); err != nil {
		t.Fatal(err)
	}
	expunge(2)
	if _, err := e.backends[0].Sweep(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	changes := func(since uint64) *mailboxv1.ChangesResponse {
		st, err := c.Changes(ctx, &mailboxv1.ChangesRequest{AccountId: "acct", MailboxId: box.MailboxId, SinceModseq: since})
		if err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	old := changes(box.HighestModseq)
	if !old.ExpungeLogTruncated {
		t.Fatal("changes since before the pruned expunge: not marked truncated")
	}
	if len(old.Vanished.Ranges) != 1 || old.Vanished.Ranges[0].Start != 2 || old.Vanished.Ranges[0].End != 2 {
		t.Fatalf("vanished %v, want 2 (1 was pruned)", old.Vanished)
	}
	recent := changes(old.Status.HighestModseq - 1)
	if recent.ExpungeLogTruncated {
		t.Fatal("changes after the pruned expunge marked truncated")
	}
}
