package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailcluster/directory"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Authenticator checks a login and password (directory.Directory).
type Authenticator interface {
	Authenticate(ctx context.Context, login, password string, clientIP netip.Addr) (directory.AccountInfo, error)
}

// Router gives the backend client serving an account. mailHost is the
// directory's affinity hint (may be empty). The router is asked again for
// every command, so a backend that went away is replaced on the next one.
type Router interface {
	Route(accountID, mailHost string) (mailboxv1.MailboxClient, error)
}

// RouterFeedback may be implemented by a Router to learn that a call
// through c failed because the backend was unreachable, so that routing
// avoids it at once (pool.Pool.MarkDown).
type RouterFeedback interface {
	Unreachable(c mailboxv1.MailboxClient)
}

// WatchDialer opens a backend Watch stream. Any healthy backend will do:
// change notifications cross backends through PostgreSQL.
type WatchDialer func(ctx context.Context) (mailboxv1.Mailbox_WatchClient, error)

// Deps are the Server's collaborators.
type Deps struct {
	Auth   Authenticator
	Router Router
	// Watch opens the shared Watch stream; nil opens it through Router.
	Watch WatchDialer
	// TLS enables STARTTLS on plain listeners; nil disables it.
	TLS *tls.Config
}

// Server serves IMAP on any number of listeners.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	caps    imap.CapSet
	secure  *imapserver.Server // LOGIN only after TLS
	open    *imapserver.Server // LOGIN allowed without TLS
	watch   *watcher
	metrics *metrics
	// envelopes caches rendered ENVELOPEs (nil: off).
	envelopes *envelopeCache
	// metaLeft is what remains of cfg.MessageCache (msgcache.go).
	metaLeft atomic.Int64
	ctx      context.Context
	cancel   context.CancelFunc
	connID   atomic.Uint64

	mu        sync.Mutex
	mailboxes map[mailboxKey]*mailboxState
	sessions  map[*session]struct{}
	listeners map[net.Listener]struct{}
	closed    bool
}

// New returns a Server. cfg must be valid (Validate is called again here);
// a nil log discards. The shared Watch stream is opened at once and kept
// open until Close.
func New(cfg Config, deps Deps, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Auth == nil || deps.Router == nil {
		return nil, errors.New("imap: an authenticator and a router are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		deps:      deps,
		log:       log,
		ctx:       ctx,
		cancel:    cancel,
		mailboxes: map[mailboxKey]*mailboxState{},
		sessions:  map[*session]struct{}{},
		listeners: map[net.Listener]struct{}{},
		metrics:   newMetrics(),
		envelopes: newEnvelopeCache(cfg.EnvelopeCache),
	}
	s.metaLeft.Store(cfg.MessageCache)
	s.caps = imap.CapSet{}
	for _, c := range []imap.Cap{
		imap.CapIMAP4rev1, imap.CapIMAP4rev2, imap.CapNamespace, imap.CapUIDPlus,
		imap.CapESearch, imap.CapListExtended, imap.CapListStatus, imap.CapMove,
		imap.CapStatusSize, imap.CapChildren, imap.CapSpecialUse, imap.CapCreateSpecialUse,
		imap.CapID, imap.CapQuota, "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE", imap.CapCondStore,
		imap.CapQResync, imap.CapSearchRes,
	} {
		s.caps[c] = struct{}{}
	}
	dial := deps.Watch
	var failed func(error)
	if dial == nil {
		// The stream's backend is reported to the router when the stream
		// fails, so that the next attempt goes elsewhere.
		var last atomic.Pointer[mailboxv1.MailboxClient]
		dial = func(ctx context.Context) (mailboxv1.Mailbox_WatchClient, error) {
			c, err := deps.Router.Route("", "")
			if err != nil {
				return nil, err
			}
			last.Store(&c)
			return c.Watch(ctx)
		}
		failed = func(err error) {
			if c := last.Load(); c != nil {
				s.unreachable(*c, err)
			}
		}
	}
	s.watch = newWatcher(dial, cfg.WatchRetry, log, s.metrics)
	s.watch.failed = failed
	go s.watch.run(ctx)
	s.secure = s.newIMAPServer(false)
	s.open = s.newIMAPServer(true)
	return s, nil
}

func (s *Server) newIMAPServer(insecure bool) *imapserver.Server {
	return imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return s.newSession(c)
		},
		Caps:         s.caps,
		Logger:       logAdapter{s.log},
		TLSConfig:    s.deps.TLS,
		InsecureAuth: insecure,
	})
}

// Serve serves IMAP on l until Close. Authentication is allowed only on TLS
// connections (implicit TLS, when l is a TLS listener, or after STARTTLS)
// unless Config.InsecureAuth is set.
func (s *Server) Serve(l net.Listener) error {
	return s.ServeAuth(l, s.cfg.InsecureAuth)
}

// ServeAuth is Serve with the insecure-authentication choice made for this
// listener alone (a local development listener next to public ones).
func (s *Server) ServeAuth(l net.Listener, insecureAuth bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return errors.New("imap: server closed")
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	if insecureAuth {
		return s.open.Serve(l)
	}
	return s.secure.Serve(l)
}

// Close stops the listeners, lets every command in flight finish (until
// ctx ends), says BYE [UNAVAILABLE] to every connection, closes them and
// stops the Watch stream.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	var sessions []*session
	for ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, ss := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ss.busy.Load() > 0 && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			_ = ss.conn.Bye("[UNAVAILABLE] Server shutting down, reconnect later")
		}()
	}
	wg.Wait()
	// imapserver closes the (already closed) listeners and the connections.
	_ = s.secure.Close()
	_ = s.open.Close()
	s.cancel()
	s.watch.wait()
	return nil
}

// BusyLine is the line for listener.Config.Busy: what a client refused by
// a connection limit reads before the connection is closed (plain
// listeners only; on implicit TLS close silently).
func BusyLine(perIP bool) string {
	if perIP {
		return "* BYE [UNAVAILABLE] Too many connections from your address\r\n"
	}
	return "* BYE [UNAVAILABLE] Too many connections, try again later\r\n"
}

// logAdapter sends imapserver's messages to slog: connection read errors
// (clients going away, timeouts) at debug, panics and handler errors (which
// the client saw as NO [SERVERBUG]) at error.
type logAdapter struct{ log *slog.Logger }

func (a logAdapter) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.Contains(msg, "imapwire:") || strings.Contains(msg, "utf7:") {
		// Malformed client input that imapserver does not classify (it
		// answers NO [SERVERBUG] without detail).
		a.log.Debug("imap: " + msg)
		return
	}
	if strings.HasPrefix(msg, "panic") || strings.HasPrefix(msg, "handling") || strings.HasPrefix(msg, "failed to create") {
		a.log.Error("imap: " + msg)
		return
	}
	a.log.Debug("imap: " + msg)
}
