package outbound

import (
	"context"
	"errors"
	"slices"
	"time"
)

// destination is the state shared by the Sends to one destination (a
// domain, or the relay): the concurrency slots and the idle connections.
// It lives in Transport.dests while a Send uses it or a connection idles.
type destination struct {
	slots chan struct{} // one token per Send in progress
	refs  int           // Sends holding or waiting for a slot
	idle  []*session    // most recently used last
}

var errClosed = errors.New("outbound: transport closed")

// acquire waits for a free slot of key's destination.
func (t *Transport) acquire(ctx context.Context, key string) (*destination, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, errClosed
	}
	d := t.dests[key]
	if d == nil {
		d = &destination{slots: make(chan struct{}, t.cfg.DomainConcurrency)}
		t.dests[key] = d
	}
	d.refs++
	t.mu.Unlock()
	select {
	case d.slots <- struct{}{}:
		return d, nil
	case <-ctx.Done():
		t.unref(key, d)
		return nil, ctx.Err()
	}
}

func (t *Transport) releaseSlot(key string, d *destination) {
	<-d.slots
	t.unref(key, d)
}

func (t *Transport) unref(key string, d *destination) {
	t.mu.Lock()
	d.refs--
	t.forget(key, d)
	t.mu.Unlock()
}

// forget drops d when nothing uses it; t.mu is held.
func (t *Transport) forget(key string, d *destination) {
	if d.refs == 0 && len(d.idle) == 0 && t.dests[key] == d {
		delete(t.dests, key)
	}
}

// takeIdle takes the most recently used idle session of key for which ok
// returns true, and checks it with RSET; a session failing RSET is closed
// and the next one tried. The session is then watched by ctx. It returns nil
// when there is none, or ctx has ended. The caller holds a slot of key.
func (t *Transport) takeIdle(ctx context.Context, key string, ok func(*session) bool) *session {
	for ctx.Err() == nil {
		var s *session
		t.mu.Lock()
		if d := t.dests[key]; d != nil {
			for i := len(d.idle) - 1; i >= 0; i-- {
				if ok(d.idle[i]) {
					s = d.idle[i]
					d.idle = slices.Delete(d.idle, i, i+1)
					break
				}
			}
		}
		t.mu.Unlock()
		if s == nil {
			return nil
		}
		s.timer.Stop()
		s.watch(ctx)
		if err := s.client.Reset(); err != nil {
			t.log.Debug("idle connection failed RSET", "host", s.host.name, "addr", s.addr, "err", err)
			s.close()
			continue
		}
		return s
	}
	return nil
}

// put keeps s idle for reuse by later Sends to key, or closes it when it
// has served MaxReuse transactions, the owner's ctx closed it, or the
// Transport is closed. A destination keeps at most DomainConcurrency idle
// sessions; the least recently used goes first. The caller holds a slot of
// key.
func (t *Transport) put(key string, s *session) {
	if !s.release() {
		s.conn.Close()
		return
	}
	if s.uses >= t.cfg.MaxReuse {
		t.quit(s)
		return
	}
	t.mu.Lock()
	d := t.dests[key]
	if t.closed || d == nil {
		t.mu.Unlock()
		t.quit(s)
		return
	}
	var evicted *session
	if len(d.idle) >= t.cfg.DomainConcurrency {
		evicted = d.idle[0]
		evicted.timer.Stop()
		d.idle = slices.Delete(d.idle, 0, 1)
	}
	d.idle = append(d.idle, s)
	s.timer = time.AfterFunc(t.cfg.IdleTimeout, func() { t.expire(key, s) })
	t.mu.Unlock()
	if evicted != nil {
		t.quit(evicted)
	}
}

// expire closes s if it is still idle.
func (t *Transport) expire(key string, s *session) {
	t.mu.Lock()
	d := t.dests[key]
	i := -1
	if d != nil {
		i = slices.Index(d.idle, s)
	}
	if i < 0 {
		t.mu.Unlock()
		return
	}
	d.idle = slices.Delete(d.idle, i, i+1)
	t.forget(key, d)
	t.mu.Unlock()
	t.quit(s)
}
