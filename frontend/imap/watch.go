package imap

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// watcher multiplexes the change notifications of every selected mailbox
// of one Server over a single backend Watch stream: accounts are added when
// a session selects one of their mailboxes and removed when the last one is
// unselected. An event kicks a resynchronisation of the mailboxes it names
// (mailboxState.kick), which fans out to sessions through the trackers.
//
// When the stream breaks it is reopened with backoff, every account is
// added again and every mailbox resynchronised, so nothing is missed; while
// it is down, sessions resynchronise on each command (healthy is false).
type watcher struct {
	dial    WatchDialer
	retry   time.Duration
	log     *slog.Logger
	metrics *metrics
	failed  func(error) // may be nil

	healthy atomic.Bool
	wake    chan struct{}
	done    chan struct{}

	mu       sync.Mutex
	accounts map[string]*watchAccount
	adds     map[string]uint64
	removes  map[string]struct{}
}

type watchAccount struct {
	modseq uint64
	boxes  map[*mailboxState]struct{}
	// The highest MODSEQ of an event per mailbox id, and of events naming
	// no mailbox: what a state added later may have missed (add).
	mailboxEvents map[int64]uint64
	anyEvent      uint64
}

func newWatcher(dial WatchDialer, retry time.Duration, log *slog.Logger, m *metrics) *watcher {
	return &watcher{
		dial: dial, retry: retry, log: log, metrics: m,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		accounts: map[string]*watchAccount{},
		adds:     map[string]uint64{},
		removes:  map[string]struct{}{},
	}
}

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// add follows mb's account; since is the MODSEQ the caller has seen.
//
// For an account already followed, an event that came between the
// caller's read and this call did not reach mb, and the backend does not
// send it again: when an event for mb's mailbox, or for any mailbox, went
// past since, mb syncs.
func (w *watcher) add(mb *mailboxState, since uint64) {
	w.mu.Lock()
	a := w.accounts[mb.key.account]
	var behind uint64
	if a == nil {
		a = &watchAccount{modseq: since, boxes: map[*mailboxState]struct{}{}}
		w.accounts[mb.key.account] = a
		delete(w.removes, mb.key.account)
		w.adds[mb.key.account] = since
	} else if missed := max(a.anyEvent, a.mailboxEvents[mb.key.id]); missed > since {
		behind = missed
	}
	a.boxes[mb] = struct{}{}
	w.mu.Unlock()
	w.signal()
	if behind != 0 {
		mb.kickNewer(behind)
	}
}

// remove stops following mb; the account is dropped with its last mailbox.
func (w *watcher) remove(mb *mailboxState) {
	w.mu.Lock()
	a := w.accounts[mb.key.account]
	if a != nil {
		delete(a.boxes, mb)
		if len(a.boxes) == 0 {
			delete(w.accounts, mb.key.account)
			if _, pending := w.adds[mb.key.account]; pending {
				delete(w.adds, mb.key.account)
			} else {
				w.removes[mb.key.account] = struct{}{}
			}
		}
	}
	w.mu.Unlock()
	w.signal()
}

func (w *watcher) wait() { <-w.done }

// run keeps a stream open until ctx ends.
func (w *watcher) run(ctx context.Context) {
	defer close(w.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := w.session(ctx)
		w.healthy.Store(false)
		w.metrics.watchUp.Set(0)
		if ctx.Err() != nil {
			return
		}
		w.metrics.watchFails.Inc()
		if w.failed != nil {
			w.failed(err)
		}
		if time.Since(start) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		w.log.Warn("imap: backend watch stream failed; retrying", "err", err, "in", backoff)
		// Until a stream is open again, selected mailboxes are polled at
		// each retry (at least every WatchRetry), so IDLE still moves.
		w.kickAll()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.retry)
	}
}

// session runs one stream: it adds every followed account, then forwards
// additions and removals as they come and kicks mailboxes on events.
func (w *watcher) session(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := w.dial(sctx)
	if err != nil {
		return err
	}
	w.mu.Lock()
	first := &mailboxv1.WatchRequest{}
	for id, a := range w.accounts {
		first.Add = append(first.Add, &mailboxv1.WatchAccount{AccountId: id, SinceModseq: a.modseq})
	}
	clear(w.adds)
	clear(w.removes)
	w.mu.Unlock()
	if err := stream.Send(first); err != nil {
		return err
	}
	// Changes made while no stream was open are caught up now; the
	// mailboxes are kicked before the stream counts as healthy, so that
	// none answers from its cache meanwhile (msgcache.go).
	w.kickAll()
	w.healthy.Store(true)
	w.metrics.watchUp.Set(1)

	recvErr := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			w.event(ev)
		}
	}()
	for {
		select {
		case err := <-recvErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-w.wake:
		}
		w.mu.Lock()
		req := &mailboxv1.WatchRequest{}
		for id, since := range w.adds {
			req.Add = append(req.Add, &mailboxv1.WatchAccount{AccountId: id, SinceModseq: since})
		}
		for id := range w.removes {
			req.Remove = append(req.Remove, id)
		}
		clear(w.adds)
		clear(w.removes)
		w.mu.Unlock()
		if len(req.Add)+len(req.Remove) == 0 {
			continue
		}
		if err := stream.Send(req); err != nil {
			return err
		}
	}
}

func (w *watcher) kickAll() {
	var boxes []*mailboxState
	w.mu.Lock()
	for _, a := range w.accounts {
		for mb := range a.boxes {
			boxes = append(boxes, mb)
		}
	}
	w.mu.Unlock()
	for _, mb := range boxes {
		mb.kick()
	}
}

func (w *watcher) event(ev *mailboxv1.WatchEvent) {
	var kick []*mailboxState
	w.mu.Lock()
	if a := w.accounts[ev.AccountId]; a != nil {
		a.modseq = max(a.modseq, ev.Modseq)
		if ev.MailboxId == 0 {
			a.anyEvent = max(a.anyEvent, ev.Modseq)
		} else {
			if a.mailboxEvents == nil {
				a.mailboxEvents = map[int64]uint64{}
			}
			a.mailboxEvents[ev.MailboxId] = max(a.mailboxEvents[ev.MailboxId], ev.Modseq)
		}
		for mb := range a.boxes {
			if ev.MailboxId == 0 || ev.MailboxId == mb.key.id {
				kick = append(kick, mb)
			}
		}
	}
	w.mu.Unlock()
	for _, mb := range kick {
		if ev.Appended != nil && ev.MailboxId == mb.key.id && mb.applyAppended(ev.Appended) {
			continue
		}
		mb.kickNewer(ev.Modseq)
	}
}
