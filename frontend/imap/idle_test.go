package imap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// events collects unilateral responses of one client.
type events struct {
	flags   chan []imap.Flag // FLAGS
	exists  chan uint32
	expunge chan uint32
	fetch   chan []imap.Flag
}

func newEvents() *events {
	return &events{flags: make(chan []imap.Flag, 100), exists: make(chan uint32, 100), expunge: make(chan uint32, 100), fetch: make(chan []imap.Flag, 100)}
}

func (e *events) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				e.exists <- *d.NumMessages
			}
			if d.Flags != nil {
				e.flags <- d.Flags
			}
		},
		Expunge: func(seq uint32) { e.expunge <- seq },
		Fetch: func(msg *imapclient.FetchMessageData) {
			buf, err := msg.Collect()
			if err == nil {
				e.fetch <- buf.Flags
			}
		},
	}
}

func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("no %s within %v", what, d)
		panic("unreachable")
	}
}

func loginWith(t *testing.T, addr, user string, ev *events) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, &imapclient.Options{UnilateralDataHandler: ev.handler()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// Two frontends on two backends: deliveries, flag changes and expunges made
// through one reach an IDLE session on the other within a second.
func TestIdleAcrossFrontendsAndBackends(t *testing.T) {
	st := newStack(t, 2)
	id := st.user("erin")
	deliver(t, st.clients[0], id, testMessage(1))
	_, addrA := st.frontend(nil, 0)
	_, addrB := st.frontend(nil, 1)

	evA := newEvents()
	a := loginWith(t, addrA, "erin", evA)
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	b := login(t, addrB, "erin")
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := a.Idle()
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	deliver(t, st.clients[1], id, testMessage(2))
	if n := within(t, evA.exists, time.Second, "EXISTS after a delivery through the other backend"); n != 2 {
		t.Fatalf("EXISTS %d", n)
	}
	t.Logf("delivery to EXISTS: %v", time.Since(start))

	if err := b.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Project"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	// A new keyword: FLAGS first, then the message's FETCH.
	if f := within(t, evA.flags, time.Second, "FLAGS with the new keyword"); !slices.Contains(f, "$Project") {
		t.Fatalf("FLAGS %v", f)
	}
	if f := within(t, evA.fetch, time.Second, "FETCH FLAGS"); len(f) != 2 || f[0] != imap.FlagFlagged || f[1] != "$Project" {
		t.Fatalf("flags %v", f)
	}
	if err := b.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	within(t, evA.fetch, time.Second, "FETCH FLAGS \\Deleted")
	if _, err := b.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	if seq := within(t, evA.expunge, time.Second, "EXPUNGE"); seq != 1 {
		t.Fatalf("EXPUNGE %d", seq)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, a, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})
	if len(msgs) != 1 || msgs[0].UID != 2 || msgs[0].SeqNum != 1 {
		t.Fatalf("after IDLE: %+v", msgs)
	}
}

// Without IDLE, changes wait for a command that may carry them, and no
// EXPUNGE is sent during FETCH, STORE or SEARCH (RFC 9051 section 7.5.1).
func TestNoExpungeDuringFetch(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("fred")
	for i := 1; i <= 3; i++ {
		deliver(t, st.clients[0], id, testMessage(i))
	}
	_, addr := st.frontend(nil, 0)
	evA := newEvents()
	a := loginWith(t, addr, "fred", evA)
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	b := login(t, addr, "fred")
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the watch event arrive
	// a still numbers 3 messages: FETCH 3 is UID 3, and no EXPUNGE comes.
	msgs := fetchAll(t, a, imap.SeqSetNum(3), &imap.FetchOptions{UID: true})
	if len(msgs) != 1 || msgs[0].UID != 3 {
		t.Fatalf("FETCH 3 = %+v", msgs)
	}
	if _, err := a.Search(&imap.SearchCriteria{}, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case seq := <-evA.expunge:
		t.Fatalf("EXPUNGE %d during FETCH/SEARCH", seq)
	default:
	}
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if seq := within(t, evA.expunge, time.Second, "EXPUNGE after NOOP"); seq != 2 {
		t.Fatalf("EXPUNGE %d", seq)
	}
}

// Many idle sessions of many accounts share one Watch stream.
func TestIdleSharesOneWatchStream(t *testing.T) {
	st := newStack(t, 1)
	const n = 20
	ids := make([]string, n)
	for i := range ids {
		ids[i] = st.user(fmt.Sprintf("u%d", i))
	}
	var dials atomic.Int64
	r := &testRouter{clients: st.clients, down: map[int]bool{}}
	cfg := DefaultConfig()
	cfg.InsecureAuth = true
	srv, err := New(cfg, Deps{Auth: st.dir, Router: r, Watch: func(ctx context.Context) (mailboxv1.Mailbox_WatchClient, error) {
		dials.Add(1)
		return st.clients[0].Watch(ctx)
	}}, st.log)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, srv)
	evs := make([]*events, n)
	for i := range ids {
		evs[i] = newEvents()
		c := loginWith(t, addr, fmt.Sprintf("u%d", i), evs[i])
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Idle(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range ids {
		deliver(t, st.clients[0], ids[i], testMessage(i))
	}
	for i := range ids {
		within(t, evs[i].exists, 2*time.Second, "EXISTS")
	}
	if d := dials.Load(); d != 1 {
		t.Fatalf("%d Watch streams for %d idle sessions", d, n)
	}
}

// With no Watch stream at all, IDLE still sees deliveries: mailboxes are
// polled at every retry of the stream.
func TestIdleWithoutWatchStream(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("sam")
	cfg := DefaultConfig()
	cfg.InsecureAuth = true
	cfg.WatchRetry = 300 * time.Millisecond
	srv, err := New(cfg, Deps{Auth: st.dir, Router: &testRouter{clients: st.clients, down: map[int]bool{}},
		Watch: func(context.Context) (mailboxv1.Mailbox_WatchClient, error) {
			return nil, errors.New("no watch for you")
		}}, st.log)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, srv)
	ev := newEvents()
	c := loginWith(t, addr, "sam", ev)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, st.clients[0], id, testMessage(1))
	within(t, ev.exists, 3*time.Second, "EXISTS without a Watch stream")
	idle.Close()
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A delivery through the frontend's own backend reaches an IDLE session
// from the Watch event alone, which names the appended message, without a
// Changes call; when the state has not seen the change before it (here a
// delivery to another mailbox of the account), it syncs instead.
func TestIdleDeliveryFromWatchEvent(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("gina")
	deliver(t, st.clients[0], id, testMessage(1))
	srv, addr := st.frontend(nil, 0)
	ev := newEvents()
	a := loginWith(t, addr, "gina", ev)
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := a.Idle()
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	resyncs := func(kind string) float64 { return counterValue(t, srv.metrics.resyncs.WithLabelValues(kind)) }
	// Let the syncs that SELECT may have started end, so that none holds
	// the state when the event arrives.
	for last, deadline := resyncs("changes"), time.Now().Add(5*time.Second); ; last = resyncs("changes") {
		time.Sleep(200 * time.Millisecond)
		if resyncs("changes") == last || time.Now().After(deadline) {
			break
		}
	}
	changes, events := resyncs("changes"), resyncs("event")

	deliverTo(t, st.clients[0], &mailboxv1.Recipient{AccountId: id, Flags: &mailboxv1.Flags{Keywords: []string{"$Urgent"}}}, testMessage(2))
	if n := within(t, ev.exists, 5*time.Second, "EXISTS after a delivery"); n != 2 {
		t.Fatalf("EXISTS %d, want 2", n)
	}
	if f := within(t, ev.flags, time.Second, "FLAGS with the delivered keyword"); !slices.Contains(f, "$Urgent") {
		t.Fatalf("FLAGS %v", f)
	}
	if got := resyncs("event") - events; got != 1 {
		t.Errorf("%v deliveries applied from the Watch event, want 1", got)
	}
	if got := resyncs("changes") - changes; got != 0 {
		t.Errorf("%v Changes calls for a delivery the Watch event named", got)
	}

	// A change the state has not seen comes first: the event is not enough.
	deliverTo(t, st.clients[0], &mailboxv1.Recipient{AccountId: id, MailboxName: "Junk"}, testMessage(3))
	deliver(t, st.clients[0], id, testMessage(4))
	if n := within(t, ev.exists, 5*time.Second, "EXISTS after the second delivery"); n != 3 {
		t.Fatalf("EXISTS %d, want 3", n)
	}
	if got := resyncs("changes") - changes; got != 1 {
		t.Errorf("%v Changes calls after a change the state missed, want 1", got)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	// What the session shows is what the backend has.
	msgs := fetchAll(t, a, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true})
	slices.SortFunc(msgs, func(x, y *imapclient.FetchMessageBuffer) int { return int(x.SeqNum) - int(y.SeqNum) })
	if len(msgs) != 3 || msgs[1].UID != 2 || !slices.Contains(msgs[1].Flags, "$Urgent") || msgs[2].UID != 3 {
		for _, m := range msgs {
			t.Logf("seq %d UID %d flags %v", m.SeqNum, m.UID, m.Flags)
		}
		t.Fatalf("after IDLE: %d messages", len(msgs))
	}
}
