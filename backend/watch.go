package backend

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"

	"mailcluster/backend/store"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// hub fans change notifications from PostgreSQL (one LISTEN connection per
// backend), and this backend's own deliveries as they commit (local), out
// to Watch streams. A watcher keeps, per account, the newest change not yet
// sent, so a slow stream costs one entry per account however many changes
// happen: changes are coalesced, and one is dropped only when an event
// already sent covers it.
type hub struct {
	mu       sync.Mutex
	watchers map[string]map[*watcher]struct{}
}

type watcher struct {
	mu sync.Mutex
	// seen is, per account, the MODSEQ up to which every change of every
	// mailbox has been reported (the watcher's since, then events that
	// name no mailbox); boxes the same per mailbox, from events naming it.
	// An event is covered, and dropped, when its MODSEQ is at most the
	// account's or its mailbox's: the receiver has been told to look at
	// that mailbox at that MODSEQ or later, and what it reads then
	// includes every earlier change (MODSEQs are given out in commit
	// order). Per mailbox, because events do not come in MODSEQ order: a
	// local delivery is reported before an older change of another
	// mailbox comes back through PostgreSQL.
	seen    map[string]uint64
	boxes   map[string]map[int64]uint64
	pending map[string]*mailboxv1.WatchEvent
	wake    chan struct{}
}

// maxWatchBoxes bounds the mailboxes a watcher follows one by one per
// account (mailbox ids are never reused, so an account that keeps
// creating mailboxes would grow the map without end).
const maxWatchBoxes = 64

func newHub() *hub { return &hub{watchers: map[string]map[*watcher]struct{}{}} }

func newWatcher() *watcher {
	return &watcher{seen: map[string]uint64{}, boxes: map[string]map[int64]uint64{},
		pending: map[string]*mailboxv1.WatchEvent{}, wake: make(chan struct{}, 1)}
}

// offer queues an event unless an event already sent or queued covers it.
func (w *watcher) offer(ev *mailboxv1.WatchEvent) {
	w.mu.Lock()
	seen, ok := w.seen[ev.AccountId]
	if !ok || ev.Modseq <= seen || (ev.MailboxId != 0 && ev.Modseq <= w.boxes[ev.AccountId][ev.MailboxId]) {
		w.mu.Unlock()
		return
	}
	boxes := w.boxes[ev.AccountId]
	if p := w.pending[ev.AccountId]; p != nil && p.MailboxId != ev.MailboxId {
		// Several mailboxes changed: the receiver looks at all of them.
		ev = &mailboxv1.WatchEvent{AccountId: ev.AccountId, Modseq: max(p.Modseq, ev.Modseq)}
	}
	// A pending event of the same mailbox is older (the floor above
	// dropped ev otherwise): ev replaces it and keeps its own appended
	// message, and the receiver, which then misses the older change, sees
	// a MODSEQ beyond the next one and syncs.
	if ev.MailboxId != 0 && len(boxes) >= maxWatchBoxes && boxes[ev.MailboxId] == 0 {
		// Too many mailboxes followed one by one: one event for all of
		// them, at the highest MODSEQ reported, resets the floors.
		top := ev.Modseq
		for _, ms := range boxes {
			top = max(top, ms)
		}
		ev = &mailboxv1.WatchEvent{AccountId: ev.AccountId, Modseq: top}
	}
	w.pending[ev.AccountId] = ev
	if ev.MailboxId == 0 {
		w.seen[ev.AccountId] = ev.Modseq
		for id, ms := range boxes {
			if ms <= ev.Modseq {
				delete(boxes, id)
			}
		}
	} else {
		if boxes == nil {
			boxes = map[int64]uint64{}
			w.boxes[ev.AccountId] = boxes
		}
		boxes[ev.MailboxId] = ev.Modseq
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take returns and clears the pending events.
func (w *watcher) take() []*mailboxv1.WatchEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*mailboxv1.WatchEvent, 0, len(w.pending))
	for k, ev := range w.pending {
		out = append(out, ev)
		delete(w.pending, k)
	}
	return out
}

func (h *hub) add(w *watcher, account string, since uint64) (isNew bool) {
	w.mu.Lock()
	if _, ok := w.seen[account]; !ok {
		isNew = true
		w.seen[account] = since
	}
	w.mu.Unlock()
	h.mu.Lock()
	m := h.watchers[account]
	if m == nil {
		m = map[*watcher]struct{}{}
		h.watchers[account] = m
	}
	m[w] = struct{}{}
	h.mu.Unlock()
	return isNew
}

func (h *hub) remove(w *watcher, account string) {
	h.mu.Lock()
	if m := h.watchers[account]; m != nil {
		delete(m, w)
		if len(m) == 0 {
			delete(h.watchers, account)
		}
	}
	h.mu.Unlock()
	w.mu.Lock()
	delete(w.seen, account)
	delete(w.boxes, account)
	delete(w.pending, account)
	w.mu.Unlock()
}

// publish hands a change to every watcher of its account.
func (h *hub) publish(c store.Change) {
	h.mu.Lock()
	ws := make([]*watcher, 0, len(h.watchers[c.Account]))
	for w := range h.watchers[c.Account] {
		ws = append(ws, w)
	}
	h.mu.Unlock()
	ev := &mailboxv1.WatchEvent{AccountId: c.Account, Modseq: c.Modseq, MailboxId: c.MailboxID, Appended: c.Appended}
	for _, w := range ws {
		w.offer(ev)
	}
}

// local hands this backend's committed deliveries to its watchers at once,
// with the message each one appended: a frontend that has seen everything
// before needs no Changes call then. The same changes come back without
// that detail from PostgreSQL's notifications a moment later, and the
// watchers drop them as covered.
func (h *hub) local(changes []store.Change) {
	for _, c := range changes {
		if c.Appended != nil {
			h.publish(c)
		}
	}
}

// accounts lists every watched account.
func (h *hub) accounts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.watchers))
	for a := range h.watchers {
		out = append(out, a)
	}
	return out
}

// resync publishes each watched account's current MODSEQ, after the LISTEN
// connection was (re)established, so that changes made while it was down
// are not missed.
func (s *service) resync(ctx context.Context) {
	for _, a := range s.hub.accounts() {
		ms, err := s.store.AccountModseq(ctx, a)
		if err != nil {
			s.log.Warn("watch resync", "err", err)
			return
		}
		s.hub.publish(store.Change{Account: a, Modseq: ms})
	}
}

func (s *service) Watch(stream grpc.BidiStreamingServer[mailboxv1.WatchRequest, mailboxv1.WatchEvent]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	s.metrics.watchers.Inc()
	defer s.metrics.watchers.Dec()
	w := newWatcher()
	var (
		mu      sync.Mutex
		watched = map[string]bool{}
	)
	defer func() {
		mu.Lock()
		for a := range watched {
			s.hub.remove(w, a)
		}
		mu.Unlock()
	}()
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			for _, a := range req.Remove {
				mu.Lock()
				delete(watched, a)
				mu.Unlock()
				s.hub.remove(w, a)
			}
			for _, a := range req.Add {
				if a == nil || a.AccountId == "" {
					continue
				}
				mu.Lock()
				if !watched[a.AccountId] && len(watched) >= s.cfg.MaxWatchAccounts {
					mu.Unlock()
					errc <- errWatchTooLarge
					return
				}
				watched[a.AccountId] = true
				mu.Unlock()
				if !s.hub.add(w, a.AccountId, a.SinceModseq) {
					continue
				}
				ms, err := s.store.AccountModseq(ctx, a.AccountId)
				if err != nil {
					errc <- err
					return
				}
				w.offer(&mailboxv1.WatchEvent{AccountId: a.AccountId, Modseq: ms})
			}
		}
	}()
	for {
		select {
		case err := <-errc:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return s.fail("Watch", err)
		case <-ctx.Done():
			return nil
		case <-w.wake:
			for _, ev := range w.take() {
				if err := stream.Send(ev); err != nil {
					return err
				}
			}
		}
	}
}
