package pop3

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mailcluster/directory"
	"mailcluster/frontend/pool"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// The in-memory fakes below let the fuzz test drive the whole command loop
// quickly; the behaviour tests run against the real stack (stack_test.go).

// fakeAuth accepts user "u" (account "acct") and "down" (an account whose
// backend is unavailable) with password "p"; "tmp" is a directory outage.
type fakeAuth struct{}

func (fakeAuth) Authenticate(ctx context.Context, login, password string, ip netip.Addr) (directory.AccountInfo, error) {
	switch {
	case login == "tmp":
		return directory.AccountInfo{}, directory.ErrTemporary
	case login == "off" && password == "p":
		return directory.AccountInfo{ID: "off"}, directory.ErrDisabled
	case (login == "u" || login == "down") && password == "p":
		return directory.AccountInfo{ID: login, Enabled: true}, nil
	}
	return directory.AccountInfo{}, directory.ErrBadCredentials
}

// fakeRouter routes every account to one backend.
type fakeRouter struct{ b *pool.Backend }

func (r fakeRouter) Route(string, string) (*pool.Backend, error) { return r.b, nil }
func (r fakeRouter) MarkDown(*pool.Backend)                      {}

// fakeMailbox is an INBOX in memory.
type fakeMailbox struct {
	mailboxv1.MailboxClient // nil: other methods are not used

	mu       sync.Mutex
	bodies   map[uint32][]byte
	flags    map[uint32]uint32
	expunged []uint32
}

func newFakeMailbox(bodies ...string) *fakeMailbox {
	f := &fakeMailbox{bodies: map[uint32][]byte{}, flags: map[uint32]uint32{}}
	for i, b := range bodies {
		f.bodies[uint32(2*i+1)] = []byte(b) // UIDs with gaps
	}
	return f
}

var errUnavailable = status.Error(codes.Unavailable, "backend-internal detail: connection refused to 10.0.0.7")

// Maildrop sends at most two messages per response, so that the session's
// handling of a maildrop in several parts is exercised.
func (f *fakeMailbox) Maildrop(ctx context.Context, r *mailboxv1.MaildropRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[mailboxv1.MaildropResponse], error) {
	if r.AccountId == "down" {
		return nil, errUnavailable
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st := &fakeStream[mailboxv1.MaildropResponse]{}
	resp := &mailboxv1.MaildropResponse{MailboxId: 7, UidValidity: 42}
	for uid := uint32(1); uid < 100; uid++ {
		if b, ok := f.bodies[uid]; ok {
			if len(resp.Uids) == 2 {
				st.items = append(st.items, resp)
				resp = &mailboxv1.MaildropResponse{MailboxId: 7, UidValidity: 42}
			}
			resp.Uids = append(resp.Uids, uid)
			resp.Sizes = append(resp.Sizes, int64(len(b)))
			resp.SystemFlags = append(resp.SystemFlags, f.flags[uid])
		}
	}
	st.items = append(st.items, resp)
	return st, nil
}

func (f *fakeMailbox) GetBody(ctx context.Context, r *mailboxv1.GetBodyRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[mailboxv1.BodyChunk], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.bodies[r.Uid]
	if !ok {
		return nil, status.Error(codes.NotFound, "no such message")
	}
	st := &fakeStream[mailboxv1.BodyChunk]{}
	for len(b) > 0 {
		n := min(len(b), 7)
		st.items = append(st.items, &mailboxv1.BodyChunk{Data: b[:n]})
		b = b[n:]
	}
	return st, nil
}

func (f *fakeMailbox) GetBodies(ctx context.Context, r *mailboxv1.GetBodiesRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[mailboxv1.BodyChunk], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := &fakeStream[mailboxv1.BodyChunk]{}
	for _, uid := range r.Uids {
		b, ok := f.bodies[uid]
		if !ok {
			st.items = append(st.items, &mailboxv1.BodyChunk{Uid: uid, Gone: true})
			continue
		}
		first := &mailboxv1.BodyChunk{Uid: uid, TotalSize: int64(len(b))}
		st.items = append(st.items, first)
		for len(b) > 0 {
			n := min(len(b), 7)
			st.items = append(st.items, &mailboxv1.BodyChunk{Data: b[:n]})
			b = b[n:]
		}
	}
	return st, nil
}

func (f *fakeMailbox) StoreFlags(ctx context.Context, r *mailboxv1.StoreFlagsRequest, _ ...grpc.CallOption) (*mailboxv1.StoreFlagsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rg := range r.Uids.GetRanges() {
		for uid := rg.Start; uid <= rg.End; uid++ {
			if _, ok := f.bodies[uid]; !ok {
				continue
			}
			switch r.Mode {
			case mailboxv1.StoreMode_STORE_MODE_ADD:
				f.flags[uid] |= r.Flags.System
			case mailboxv1.StoreMode_STORE_MODE_REMOVE:
				f.flags[uid] &^= r.Flags.System
			}
		}
	}
	return &mailboxv1.StoreFlagsResponse{}, nil
}

func (f *fakeMailbox) Expunge(ctx context.Context, r *mailboxv1.ExpungeRequest, _ ...grpc.CallOption) (*mailboxv1.ExpungeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &mailboxv1.ExpungeResponse{}
	for _, rg := range r.Uids.GetRanges() {
		for uid := rg.Start; uid <= rg.End; uid++ {
			if _, ok := f.bodies[uid]; ok && f.flags[uid]&uint32(mailboxv1.Flag_FLAG_DELETED) != 0 {
				delete(f.bodies, uid)
				f.expunged = append(f.expunged, uid)
				resp.Expunged = append(resp.Expunged, uid)
			}
		}
	}
	return resp, nil
}

// fakeStream replays items, then io.EOF.
type fakeStream[T any] struct {
	grpc.ClientStream // nil: not used
	items             []*T
}

func (s *fakeStream[T]) Recv() (*T, error) {
	if len(s.items) == 0 {
		return nil, io.EOF
	}
	it := s.items[0]
	s.items = s.items[1:]
	return it, nil
}

// scriptConn is a net.Conn that reads a script and collects what is
// written.
type scriptConn struct {
	r io.Reader
	w io.Writer
}

func (c *scriptConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 110} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
