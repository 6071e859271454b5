package imap

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// fakeWatch is one Watch stream: what the watcher sends arrives on sent;
// events pushed on events are received; fail ends it.
type fakeWatch struct {
	grpc.ClientStream
	sent   chan *mailboxv1.WatchRequest
	events chan *mailboxv1.WatchEvent
	fail   chan struct{}
}

func (f *fakeWatch) Send(r *mailboxv1.WatchRequest) error {
	f.sent <- r
	return nil
}

func (f *fakeWatch) Recv() (*mailboxv1.WatchEvent, error) {
	select {
	case ev := <-f.events:
		return ev, nil
	case <-f.fail:
		return nil, io.ErrUnexpectedEOF
	}
}

func newFakeWatch() *fakeWatch {
	return &fakeWatch{sent: make(chan *mailboxv1.WatchRequest, 10), events: make(chan *mailboxv1.WatchEvent, 10), fail: make(chan struct{})}
}

func recvReq(t *testing.T, f *fakeWatch) *mailboxv1.WatchRequest {
	t.Helper()
	select {
	case r := <-f.sent:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no WatchRequest")
		return nil
	}
}

func adds(r *mailboxv1.WatchRequest) []string {
	var out []string
	for _, a := range r.Add {
		out = append(out, a.AccountId)
	}
	slices.Sort(out)
	return out
}

// The multiplexer adds an account with its first mailbox and removes it
// with its last, sends everything again on a new stream, and kicks only
// the mailboxes an event names.
func TestWatcherMultiplexing(t *testing.T) {
	streams := make(chan *fakeWatch, 4)
	dial := func(ctx context.Context) (mailboxv1.Mailbox_WatchClient, error) {
		select {
		case f := <-streams:
			return f, nil
		default:
			return nil, errors.New("no stream")
		}
	}
	w := newWatcher(dial, 50*time.Millisecond, testLog(), newMetrics())
	s1 := newFakeWatch()
	streams <- s1
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); w.wait() }()
	go w.run(ctx)
	if r := recvReq(t, s1); len(r.Add) != 0 {
		t.Fatalf("first request %v", r)
	}

	routes := &noRouter{}
	srv := &Server{cfg: DefaultConfig(), log: testLog(), ctx: ctx, metrics: newMetrics(), deps: Deps{Router: routes}}
	box := func(account string, id int64) *mailboxState {
		return &mailboxState{srv: srv, key: mailboxKey{account, id}}
	}
	a1, a2, b1 := box("a", 1), box("a", 2), box("b", 7)
	w.add(a1, 5)
	if got := adds(recvReq(t, s1)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("adds %v", got)
	}
	w.add(a2, 5) // same account: nothing to send
	w.add(b1, 9)
	if got := adds(recvReq(t, s1)); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("adds %v", got)
	}
	w.remove(a1)
	w.remove(b1)
	if r := recvReq(t, s1); len(r.Add) != 0 || !slices.Equal(r.Remove, []string{"b"}) {
		t.Fatalf("after removing b's last mailbox: %v", r)
	}

	// An event for mailbox 2 of a kicks a2 (a1 is gone, and a2 has not
	// seen modseq 6).
	s1.events <- &mailboxv1.WatchEvent{AccountId: "a", Modseq: 6, MailboxId: 2}
	deadline := time.Now().Add(5 * time.Second)
	for routes.n.Load() == 0 { // the kicked mailbox's sync asks for a backend
		if time.Now().After(deadline) {
			t.Fatal("event did not kick the mailbox")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The stream breaks: the next one gets every followed account at once.
	s2 := newFakeWatch()
	streams <- s2
	close(s1.fail)
	if got := adds(recvReq(t, s2)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("re-added %v", got)
	}
	for deadline := time.Now().Add(5 * time.Second); !w.healthy.Load(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not healthy on the new stream")
		}
	}
}

type noRouter struct{ n atomic.Int64 }

func (r *noRouter) Route(string, string) (mailboxv1.MailboxClient, error) {
	r.n.Add(1)
	return nil, errors.New("no backend")
}

// A state added to an account the frontend already follows, from a Select
// read before a change the watch has already reported, catches up: that
// event went to the account's other mailboxes, and the backend does not
// send it again. (Through a session the window is between the backend's
// Select and the state's registration; here it is made wide.)
func TestWatchAddCatchesUp(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("hank")
	deliver(t, st.clients[0], id, testMessage(1))
	srv, addr := st.frontend(nil, 0)
	c := login(t, addr, "hank")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil { // the account is followed
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := st.clients[0].Select(ctx, &mailboxv1.SelectRequest{AccountId: id, Name: "Junk"})
	if err != nil {
		t.Fatal(err)
	}
	deliverTo(t, st.clients[0], &mailboxv1.Recipient{AccountId: id, MailboxName: "Junk"}, testMessage(2))
	after, err := st.clients[0].Select(ctx, &mailboxv1.SelectRequest{AccountId: id, Name: "Junk"})
	if err != nil {
		t.Fatal(err)
	}
	for { // until the watch has reported the delivery to Junk
		srv.watch.mu.Lock()
		seen := srv.watch.accounts[id].modseq
		srv.watch.mu.Unlock()
		if seen >= after.Status.HighestModseq {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the watch did not report the delivery to Junk")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mb, fresh := srv.acquire(id, "", before)
	if !fresh {
		t.Fatal("Junk had a state already")
	}
	defer srv.release(mb)
	srv.watch.add(mb, before.Status.HighestModseq)
	for {
		mb.mu.Lock()
		n := mb.uids.len()
		mb.mu.Unlock()
		if n == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the state added after the event has %d messages, want 1", n)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A mailbox that had no event since its Select does not sync when it
	// is added, however far the account's other mailboxes have moved.
	sent, err := st.clients[0].Select(ctx, &mailboxv1.SelectRequest{AccountId: id, Name: "Sent"})
	if err != nil {
		t.Fatal(err)
	}
	syncs := counterValue(t, srv.metrics.resyncs.WithLabelValues("changes"))
	mb2, _ := srv.acquire(id, "", sent)
	defer srv.release(mb2)
	srv.watch.add(mb2, sent.Status.HighestModseq)
	time.Sleep(300 * time.Millisecond)
	if got := counterValue(t, srv.metrics.resyncs.WithLabelValues("changes")) - syncs; got != 0 {
		t.Errorf("%v syncs of a mailbox added with nothing missed", got)
	}
}
