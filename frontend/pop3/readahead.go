package pop3

import (
	"context"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Read-ahead: clients download new mail with RETR 1, RETR 2, … one at a
// time, each waiting for the last. When a client sends RETR n, the session
// also asks the backend for the next Config.ReadAhead messages, in
// parallel, and keeps their bodies in memory until the client asks for them
// or the session ends. The bodies are the backend's bytes, so what RETR
// sends does not change; a read-ahead that failed is simply done again by
// the RETR itself, which answers its errors as usual. Only messages up to
// maxAheadSize are read ahead, and all sessions of a server together hold
// at most Config.ReadAheadMemory bytes: memory bounded per session and per
// node, no mail on disk (DESIGN.md rule 7).

const maxAheadSize = 1 << 20

// ahead is one body being read ahead.
type ahead struct {
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

// readAhead starts reading the messages after index i.
func (s *session) readAhead(i int) {
	if s.srv.cfg.ReadAhead <= 0 {
		return
	}
	if s.ahead == nil {
		s.ahead = map[int]*ahead{}
	}
	n := 0
	for j := i + 1; j < len(s.msgs) && n < s.srv.cfg.ReadAhead; j++ {
		m := &s.msgs[j]
		if m.deleted || m.retrieved {
			continue
		}
		n++
		if s.ahead[j] != nil || m.size > maxAheadSize || !s.srv.reserve(m.size) {
			continue
		}
		a := &ahead{size: m.size, done: make(chan struct{})}
		s.ahead[j] = a
		go s.fetchAhead(a, m.uid)
	}
}

// fetchAhead runs on its own goroutine: it may use only what does not
// change after login.
func (s *session) fetchAhead(a *ahead, uid uint32) {
	defer close(a.done)
	b, err := s.srv.router.Route(s.account.ID, s.account.Backend)
	if err != nil {
		a.err = err
		return
	}
	ctx, cancel := context.WithTimeout(withAccountCtx(s.ctx, s.account.ID), s.srv.cfg.BackendTimeout)
	defer cancel()
	st, err := b.Client.GetBody(ctx, &mailboxv1.GetBodyRequest{AccountId: s.account.ID, MailboxId: s.mailboxID, Uid: uid})
	if err != nil {
		a.err = err
		return
	}
	buf := make([]byte, 0, a.size)
	for {
		c, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			if status.Code(err) == codes.Unavailable {
				s.srv.router.MarkDown(b)
			}
			a.err = err
			return
		}
		if int64(len(buf)+len(c.Data)) > a.size {
			a.err = errSizeChanged
			return
		}
		buf = append(buf, c.Data...)
	}
	a.data = buf
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
