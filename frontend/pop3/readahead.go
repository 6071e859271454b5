package pop3

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Read-ahead: clients download new mail with RETR 1, RETR 2, … one at a
// time, each waiting for the last. When a client sends RETR n and message n
// is not on its way yet, the session asks the backend for it and the
// messages after it, up to Config.ReadAhead of them, in one GetBodies call (one stream and one metadata query on the
// backend for the whole batch, where a GetBody per message costs a call and
// a query each), and keeps their bodies in memory until the client asks
// for them or the session ends. The next batch starts once no more than
// half of the next ReadAhead messages are on their way, so that batches
// hold at least half the window and the RETRs that follow do not wait for
// the backend. The bodies are the backend's bytes, so what RETR sends does
// not change; a read-ahead that failed, or a message gone since login, is
// simply done again by the RETR itself, which answers its errors as usual.
// Only messages up to maxAheadSize are read ahead, one session holds at
// most a sixteenth of Config.ReadAheadMemory (at most 8 MiB), and all
// sessions of a server together hold at most Config.ReadAheadMemory bytes:
// memory bounded per message, session and node, no mail on disk (DESIGN.md
// rule 7).

const maxAheadSize = 1 << 20

var (
	// errGone: the backend says the message is no longer in the mailbox.
	errGone = errors.New("pop3: message gone")
	// errBadStream: a GetBodies stream out of order or cut short.
	errBadStream = errors.New("pop3: GetBodies stream does not match the request")
)

// ahead is one body being read ahead.
type ahead struct {
	uid  uint32
	size int64 // reserved from the server's budget
	done chan struct{}
	data []byte
	err  error
}

// reserve takes n bytes from the server's read-ahead budget.
func (s *Server) reserve(n int64) bool {
	if s.aheadUsed.Add(n) > s.cfg.ReadAheadMemory {
		s.aheadUsed.Add(-n)
		return false
	}
	return true
}

func (s *Server) release(n int64) { s.aheadUsed.Add(-n) }

// readAhead starts reading message index i (unless it was retrieved
// before: a second RETR reads it directly) and the ones after it, when no
// more than half of those ReadAhead messages are already on their way.
func (s *session) readAhead(i int) {
	window := s.srv.cfg.ReadAhead
	if window <= 0 {
		return
	}
	if s.ahead == nil {
		s.ahead = map[int]*ahead{}
	}
	var want []int
	n, have := 0, 0
	// One session holds at most a sixteenth of the server's budget (and
	// at least one largest message), so that a few sessions downloading
	// large mail do not take every other session's read-ahead.
	limit := max(min(s.srv.cfg.ReadAheadMemory/16, 8<<20), maxAheadSize)
	// Every body this session holds counts against it. Those of messages
	// the client went past or deleted are let go first: it skipped them,
	// and a RETR of one reads it directly.
	var held int64
	for j, a := range s.ahead {
		if j < i || s.msgs[j].deleted {
			delete(s.ahead, j)
			s.srv.release(a.size)
			continue
		}
		held += a.size
	}
	for j := i; j < len(s.msgs) && n < window; j++ {
		m := &s.msgs[j]
		if m.deleted || m.retrieved {
			continue
		}
		n++
		switch {
		case s.ahead[j] != nil:
			have++
		case m.size <= maxAheadSize && held+m.size <= limit:
			want = append(want, j)
			held += m.size
		}
	}
	if len(want) == 0 || have > window/2 {
		return
	}
	batch := make([]*ahead, 0, len(want))
	for _, j := range want {
		m := &s.msgs[j]
		if !s.srv.reserve(m.size) {
			continue
		}
		a := &ahead{uid: m.uid, size: m.size, done: make(chan struct{})}
		s.ahead[j] = a
		batch = append(batch, a)
	}
	if len(batch) > 0 {
		go s.fetchAhead(batch)
	}
}

// fetchAhead reads a batch with one GetBodies call. It runs on its own
// goroutine: it may use only what does not change after login. Each entry's
// done is closed once, when its body or its error is set.
func (s *session) fetchAhead(batch []*ahead) {
	next := 0 // the first entry not done
	fail := func(err error) {
		for ; next < len(batch); next++ {
			batch[next].err = err
			close(batch[next].done)
		}
	}
	b, err := s.srv.router.Route(s.account.ID, s.account.Backend)
	if err != nil {
		fail(err)
		return
	}
	ctx, cancel := context.WithTimeout(withAccountCtx(s.ctx, s.account.ID), s.srv.cfg.BackendTimeout)
	defer cancel()
	uids := make([]uint32, len(batch))
	for k, a := range batch {
		uids[k] = a.uid
	}
	st, err := b.Client.GetBodies(ctx, &mailboxv1.GetBodiesRequest{AccountId: s.account.ID, MailboxId: s.mailboxID, Uids: uids})
	if err != nil {
		fail(err)
		return
	}
	var (
		cur   *ahead // receiving, batch[next]
		buf   []byte
		total int64
	)
	for {
		c, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			if status.Code(err) == codes.Unavailable {
				s.srv.router.MarkDown(b)
			}
			fail(err)
			return
		}
		if c.Uid != 0 { // the first chunk of the next message
			if cur != nil || next == len(batch) || c.Uid != batch[next].uid {
				fail(errBadStream)
				return
			}
			if c.Gone {
				batch[next].err = errGone
				close(batch[next].done)
				next++
				continue
			}
			if c.TotalSize > batch[next].size {
				fail(errSizeChanged)
				return
			}
			cur, total = batch[next], c.TotalSize
			if int64(len(c.Data)) == total {
				// The whole body in one chunk (up to the backend's
				// bodyChunk, almost 32 KiB): keep it as received,
				// without a copy.
				buf = c.Data
				c.Data = nil
			} else {
				buf = make([]byte, 0, total)
			}
		}
		if cur == nil || int64(len(buf)+len(c.Data)) > total {
			fail(errBadStream)
			return
		}
		buf = append(buf, c.Data...)
		if int64(len(buf)) == total {
			cur.data = buf
			close(cur.done)
			cur, buf = nil, nil
			next++
		}
	}
	fail(errBadStream) // entries the stream left out, if any
}

// takeAhead returns the body of message index i if it was read ahead
// successfully, waiting for it if it is still on its way; ok is false when
// the caller must fetch it itself. With use false (TOP) the body is only
// forgotten.
func (s *session) takeAhead(i int, use bool) (data []byte, ok bool) {
	a := s.ahead[i]
	if a == nil {
		return nil, false
	}
	delete(s.ahead, i)
	defer s.srv.release(a.size)
	if !use {
		return nil, false
	}
	select {
	case <-a.done:
	case <-s.ctx.Done():
		return nil, false
	}
	if a.err != nil {
		s.srv.metrics.ahead.WithLabelValues("miss").Inc()
		return nil, false
	}
	s.srv.metrics.ahead.WithLabelValues("hit").Inc()
	return a.data, true
}

// dropAhead forgets every read-ahead (the session ends); the fetches stop
// with the session's context.
func (s *session) dropAhead() {
	for i, a := range s.ahead {
		delete(s.ahead, i)
		s.srv.release(a.size)
	}
}
