package backend

import (
	"context"
	"log/slog"
	"time"

	"mailcluster/backend/store"
)

// publisher batches the change notifications of committed transactions and
// publishes them through PostgreSQL (store.Publish), so that one NOTIFY
// transaction carries the changes of many deliveries.
type publisher struct {
	ch  chan store.Change
	st  *store.Store
	log *slog.Logger
}

func newPublisher(log *slog.Logger) *publisher {
	return &publisher{ch: make(chan store.Change, 10000), log: log}
}

// enqueue is store.Config.Published. It waits briefly when the queue is
// full; a change that cannot be queued is dropped with a warning (watchers
// still see it with the next change of the account or on resync).
func (p *publisher) enqueue(changes []store.Change) {
	for _, c := range changes {
		select {
		case p.ch <- c:
		default:
			select {
			case p.ch <- c:
			case <-time.After(time.Second):
				p.log.Warn("change notification dropped: queue full", "modseq", c.Modseq)
			}
		}
	}
}

// run publishes queued changes until ctx ends.
func (p *publisher) run(ctx context.Context) {
	batch := make([]store.Change, 0, 512)
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-p.ch:
			batch = append(batch[:0], c)
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case c := <-p.ch:
				batch = append(batch, c)
			default:
				break drain
			}
		}
		if err := p.st.Publish(ctx, batch); err != nil && ctx.Err() == nil {
			p.log.Warn("publishing change notifications", "changes", len(batch), "err", err)
		}
	}
}
