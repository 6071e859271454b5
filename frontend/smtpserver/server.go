// Package smtpserver is the frontend's SMTP service: inbound mail on port 25
// (RFC 5321; local recipients only, no AUTH) and message submission on 587
// with STARTTLS and 465 with implicit TLS (RFC 6409, RFC 8314; AUTH PLAIN and
// LOGIN through the directory). It adapts go-smtp sessions to directory
// lookups and backend Deliver calls and does nothing else: no storage, no
// LDAP or SQL of its own (it is the only importer of go-smtp).
//
// Contract: a 250 reply to DATA or BDAT LAST is sent only after the backend
// has answered Deliver with the message durable for at least one recipient;
// any failure before that is a 4xx or 5xx reply and the Deliver stream is
// canceled, so the backend stores nothing.
package smtpserver

import (
	"context"
	"crypto/tls"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"mailcluster/directory"
	"mailcluster/frontend/pool"
)

// Mode is what a listener is for.
type Mode int

// Modes.
const (
	Inbound    Mode = iota // port 25: mail from the Internet to local recipients
	Submission             // ports 587 and 465: authenticated users' mail
)

func (m Mode) String() string {
	if m == Submission {
		return "submission"
	}
	return "smtp"
}

// Config configures one SMTP listener's server.
type Config struct {
	Mode     Mode
	Hostname string
	// TLS, if set, enables STARTTLS (RFC 3207). ImplicitTLS says that the
	// listener already speaks TLS (port 465).
	TLS         *tls.Config
	ImplicitTLS bool
	// InsecureAuth allows AUTH without TLS (local development only).
	InsecureAuth bool

	MaxMessageSize int64 // bytes, before the Received header is added
	MaxRecipients  int   // RCPT commands per message (RFC 5321 4.5.3.1.8)
	MaxExpanded    int   // accounts one message is delivered to after list expansion
	MaxLineLength  int   // bytes per text line including CRLF (RFC 5321 4.5.3.1.6)
	MaxCommandLine int   // bytes per command line including CRLF (RFC 5321 4.5.3.1.4); MAIL and AUTH get more (go-smtp)
	MaxHops        int   // Received fields beyond which a message is a loop (RFC 5321 6.3)

	IdleTimeout    time.Duration // waiting for a command
	DataTimeout    time.Duration // waiting for the next piece of a message
	BackendTimeout time.Duration // one backend or directory call; Deliver's answer after the upload

	SenderCheck      bool // submission: MAIL FROM must be one of the user's addresses
	MaxBadRecipients int  // rejected RCPTs per session before it is closed (0: no limit)
	MaxAuthFailures  int  // failed AUTHs per connection before it is closed (0: no limit)

	// Vrfy and Expn answer VRFY and EXPN (RFC 5321 3.5) to authenticated
	// users of a submission listener; otherwise, and always on port 25,
	// VRFY gets 252 and EXPN 502. MaxVrfy bounds them per session (0: no
	// limit); their refusals count as bad recipients.
	Vrfy, Expn bool
	MaxVrfy    int

	// Metrics, if set, receives the service's metrics (shared by the
	// listeners of one frontend).
	Metrics *Metrics
}

// Directory is what the server asks the directory (directory.Directory).
type Directory interface {
	Resolve(ctx context.Context, address string) (directory.Result, error)
	Authenticate(ctx context.Context, login, password string, clientIP netip.Addr) (directory.AccountInfo, error)
}

// Router picks the backend for an account (pool.Pool).
type Router interface {
	Route(accountID, mailHost string) (*pool.Backend, error)
	MarkDown(b *pool.Backend)
}

// Server serves SMTP on one or more listeners of the same kind.
type Server struct {
	cfg    Config
	dir    Directory
	router Router
	log    *slog.Logger
	smtp   *smtp.Server
}

// New returns a server; Serve starts it on a listener.
func New(cfg Config, dir Directory, router Router, log *slog.Logger) *Server {
	if cfg.MaxHops <= 0 {
		cfg.MaxHops = 50
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = 1000
	}
	if cfg.MaxCommandLine <= 0 {
		cfg.MaxCommandLine = 512
	}
	if cfg.BackendTimeout <= 0 {
		cfg.BackendTimeout = 30 * time.Second
	}
	if cfg.DataTimeout <= 0 {
		cfg.DataTimeout = 3 * time.Minute
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	s := &Server{cfg: cfg, dir: dir, router: router, log: log.With("listener", cfg.Mode.String())}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageSize
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.MaxCommandLineLength = cfg.MaxCommandLine
	// Never on port 25: VRFY and EXPN would let anyone harvest addresses.
	srv.EnableVRFY = cfg.Vrfy && cfg.Mode == Submission
	srv.EnableEXPN = cfg.Expn && cfg.Mode == Submission
	srv.ReadTimeout = cfg.IdleTimeout
	srv.WriteTimeout = cfg.IdleTimeout
	srv.EnableSMTPUTF8 = true
	srv.TLSConfig = cfg.TLS
	srv.AllowInsecureAuth = cfg.InsecureAuth
	srv.ErrorLog = stdlog.New(slogWriter{s.log}, "", 0)
	s.smtp = srv
	return s
}

// slogWriter sends go-smtp's own log lines (connection errors) to slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("go-smtp", "msg", string(p))
	return len(p), nil
}

// Serve serves connections from l until Close. For an implicit-TLS
// listener, l must already be a TLS listener.
func (s *Server) Serve(l net.Listener) error {
	err := s.smtp.Serve(l)
	if err == smtp.ErrServerClosed {
		return nil
	}
	return err
}

// Close stops the listeners and closes every connection at once; sessions'
// contexts are canceled, so in-flight deliveries are abandoned (and not
// acknowledged).
func (s *Server) Close() error { return s.smtp.Close() }

// Shutdown stops the listeners and waits for sessions to end, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.smtp.Shutdown(ctx) }

// Busy is the reply to a client refused for a connection limit.
func Busy(hostname string) func(perIP bool) string {
	return func(perIP bool) string {
		if perIP {
			return fmt.Sprintf("421 4.7.0 %s Too many connections from your address, try again later\r\n", hostname)
		}
		return fmt.Sprintf("421 4.3.2 %s Too many connections, try again later\r\n", hostname)
	}
}
