package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"mailcluster/directory"
	"mailcluster/frontend/pool"
)

// Authenticator checks a login and password (directory.Directory).
// Errors: directory.ErrBadCredentials, directory.ErrDisabled,
// directory.ErrTemporary (or one wrapping it), or the context's error.
type Authenticator interface {
	Authenticate(ctx context.Context, login, password string, clientIP netip.Addr) (directory.AccountInfo, error)
}

// Router picks the backend for an account (pool.Pool): mailHost is the
// directory's affinity (may be empty). It is asked before every backend
// call, so a session follows a failover; a backend that answers
// UNAVAILABLE is marked down. A Route error is temporary.
type Router interface {
	Route(accountID, mailHost string) (*pool.Backend, error)
	MarkDown(b *pool.Backend)
}

// tlsHandshakeTimeout bounds a TLS handshake (implicit TLS or STLS).
const tlsHandshakeTimeout = 30 * time.Second

// Server serves POP3 on any number of listeners. It is safe for concurrent
// use.
type Server struct {
	cfg    Config
	auth   Authenticator
	router Router
	log    *slog.Logger
	ids    atomic.Uint64

	aheadUsed atomic.Int64 // bytes reserved for read-ahead
	metrics   *metrics

	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	wg        sync.WaitGroup
}

// NewServer returns a server; Serve starts it on a listener. cfg is used as
// given: call Validate first (zero limits fall back to the defaults).
func NewServer(cfg Config, auth Authenticator, router Router, log *slog.Logger) *Server {
	def := DefaultConfig()
	orDefault(&cfg.Hostname, def.Hostname)
	orDefault(&cfg.IdleTimeout, def.IdleTimeout)
	orDefault(&cfg.MaxLineLength, def.MaxLineLength)
	orDefault(&cfg.MaxAuthCommands, def.MaxAuthCommands)
	orDefault(&cfg.MaxBadCommands, def.MaxBadCommands)
	orDefault(&cfg.MaxAuthFailures, def.MaxAuthFailures)
	orDefault(&cfg.BackendTimeout, def.BackendTimeout)
	if cfg.ReadAhead < 0 {
		cfg.ReadAhead = 0
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, auth: auth, router: router, log: log.With("proto", "pop3"), metrics: newMetrics(),
		listeners: map[net.Listener]struct{}{}, sessions: map[*session]struct{}{}}
}

// orDefault sets *v to def when it is zero or negative.
func orDefault[T int | time.Duration | string](v *T, def T) {
	var zero T
	if *v <= zero {
		*v = def
	}
}

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("pop3: server closed")

// Serve accepts connections from l until Close or Shutdown, then returns
// ErrServerClosed. Connections that are *tls.Conn (l made by tls.NewListener,
// port 995) are implicit TLS: the handshake is done first and STLS is not
// offered. The client's address is the connection's RemoteAddr (the PROXY
// protocol source when the frontend's listener read a header).
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(5*time.Millisecond, 2*delay), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !s.startSession(c) {
			c.Close()
		}
	}
}

func (s *Server) startSession(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	ss := newSession(s, c)
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ss.serve()
		s.mu.Lock()
		delete(s.sessions, ss)
		s.mu.Unlock()
	}()
	return true
}

// Shutdown stops the listeners and ends the sessions gracefully: a session
// waiting for a command is told "-ERR [SYS/TEMP]" and closed; a command in
// progress (a QUIT's expunge, a RETR) finishes first. When ctx ends before
// every session has, the rest are closed at once: a connection closed
// before its QUIT has been answered deletes nothing (RFC 1939 section 6).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for ss := range s.sessions {
		ss.interruptLocked()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for ss := range s.sessions {
		ss.abortLocked()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// Close is Shutdown with a grace period of the backend timeout.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.BackendTimeout)
	defer cancel()
	err := s.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil // sessions were closed at the end of the grace period
	}
	return err
}

// clientAddr is the client's IP address.
func clientAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// isTLS reports whether c is a TLS connection (implicit TLS).
func isTLS(c net.Conn) (*tls.Conn, bool) {
	tc, ok := c.(*tls.Conn)
	return tc, ok
}

// Busy is the line sent to a client refused for a connection limit on a
// plaintext listener (listener.Config.Busy).
func Busy(perIP bool) string {
	if perIP {
		return "-ERR [SYS/TEMP] Too many connections from your address, try again later.\r\n"
	}
	return "-ERR [SYS/TEMP] Too many connections, try again later.\r\n"
}
