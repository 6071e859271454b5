package outbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// session is one SMTP connection, ready for MAIL FROM between transactions.
// It belongs to one Send at a time, or to the idle pool.
type session struct {
	client *smtp.Client
	conn   net.Conn // the TCP connection; closing it aborts any exchange
	rw     net.Conn // what client reads and writes: conn, or TLS over it
	host   host
	addr   string
	tls    bool
	uses   int         // transactions begun (MAIL FROM sent)
	timer  *time.Timer // closes the session when idle too long
	stop   func() bool // unregisters the watcher of the owning Send's ctx
}

// Stages of a session, for error reports.
const (
	stageConnect  = "connect"
	stageGreeting = "greeting/EHLO"
	stageStartTLS = "STARTTLS"
	stageTLS      = "TLS handshake"
	stageAuth     = "AUTH"
	stageRset     = "RSET"
	stageMail     = "MAIL FROM"
	stageRcpt     = "RCPT TO"
	stageData     = "DATA"
	stageBody     = "message transfer"
	stageDot      = "end of DATA"
)

// stageError is an error (a *smtp.SMTPError for a negative reply, or a
// network error) and the stage of the session it happened in.
type stageError struct {
	stage string
	err   error
}

func (e *stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

var (
	errNoStartTLS = errors.New("STARTTLS required but not offered")
	errNoAuth     = errors.New("AUTH PLAIN required but not offered")
)

// quitTimeout bounds the wait for QUIT's reply when closing a session.
const quitTimeout = 10 * time.Second

// open connects to addr of h and brings the session to the point where MAIL
// may be sent: greeting, EHLO (HELO when EHLO is refused with 500/502),
// STARTTLS, AUTH. Unless plain, STARTTLS is used when the server offers it,
// and required for the relay. For an MX host STARTTLS is opportunistic: the
// certificate is not verified, and a negative reply to STARTTLS continues
// in plaintext. A failed TLS handshake, or a connection lost right after it,
// is returned with stage stageTLS so that the caller can reconnect with
// plain set.
//
// The session is closed when ctx ends, until its owner calls release.
func (t *Transport) open(ctx context.Context, h host, addr string, plain bool) (*session, error) {
	dctx, cancel := context.WithTimeout(ctx, t.cfg.ConnectTimeout)
	conn, err := t.dialer.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return nil, &stageError{stageConnect, err}
	}
	s := &session{conn: conn, rw: conn, host: h, addr: addr}
	s.watch(ctx)
	if h.relay && t.cfg.RelayImplicitTLS {
		tc, err := t.handshake(ctx, conn, t.relayTLS)
		if err != nil {
			s.close()
			return nil, &stageError{stageTLS, err}
		}
		s.rw, s.tls = tc, true
	}
	s.client = t.newClient(s.rw)
	if err := s.client.Hello(t.cfg.HeloName); err != nil {
		s.close()
		return nil, &stageError{stageGreeting, err}
	}
	if !s.tls && !plain {
		offered, _ := s.client.Extension("STARTTLS")
		switch {
		case offered:
			err := t.startTLS(ctx, s)
			var reply *smtp.SMTPError
			var se *stageError
			// Only a refusal of STARTTLS itself continues in plaintext; a
			// negative reply to the EHLO inside TLS ends this session (the
			// caller tries the next host).
			if err != nil && (h.relay || !errors.As(err, &reply) || !errors.As(err, &se) || se.stage != stageStartTLS) {
				s.close()
				return nil, err
			}
			if err != nil {
				t.log.Info("STARTTLS refused, continuing in plaintext", "host", h.name, "addr", addr, "reply", sanitize(reply.Error()))
			}
		case h.relay:
			s.close()
			return nil, &stageError{stageStartTLS, errNoStartTLS}
		}
	}
	if h.relay && t.cfg.RelayUsername != "" {
		if !s.client.SupportsAuth(sasl.Plain) {
			s.close()
			return nil, &stageError{stageAuth, errNoAuth}
		}
		if err := s.client.Auth(sasl.NewPlainClient("", t.cfg.RelayUsername, t.cfg.RelayPassword)); err != nil {
			s.close()
			return nil, &stageError{stageAuth, err}
		}
	}
	return s, nil
}

// startTLS sends STARTTLS and upgrades s (RFC 3207). go-smtp's Client has no
// method for this on a connection already greeted with our EHLO name, so the
// command is sent here and a new Client continues over TLS, fed a synthetic
// greeting; its EHLO then learns the extensions again, as RFC 3207 section
// 4.2 requires. Whatever the server sent after its 220 reply is an error
// (it would have been injected before TLS).
func (t *Transport) startTLS(ctx context.Context, s *session) error {
	s.conn.SetDeadline(time.Now().Add(t.cfg.CommandTimeout))
	if _, err := io.WriteString(s.conn, "STARTTLS\r\n"); err != nil {
		return &stageError{stageStartTLS, err}
	}
	br := bufio.NewReader(s.conn)
	_, _, err := textproto.NewReader(br).ReadResponse(220)
	s.conn.SetDeadline(time.Time{})
	var protoErr *textproto.Error
	switch {
	case br.Buffered() > 0:
		// Whatever the reply, the old Client cannot read what came
		// after it.
		return &stageError{stageTLS, errors.New("data after the STARTTLS reply")}
	case errors.As(err, &protoErr):
		return &stageError{stageStartTLS, replyError(protoErr)}
	case err != nil:
		return &stageError{stageStartTLS, err}
	}
	cfg := t.relayTLS
	if !s.host.relay {
		// Opportunistic: any certificate will do (RFC 7435).
		cfg = &tls.Config{InsecureSkipVerify: true}
		if _, err := netip.ParseAddr(s.host.name); err != nil && !strings.HasPrefix(s.host.name, "[") {
			cfg.ServerName = s.host.name
		}
	}
	tc, err := t.handshake(ctx, s.conn, cfg)
	if err != nil {
		return &stageError{stageTLS, err}
	}
	s.rw, s.tls = tc, true
	s.client = t.newClient(&greetedConn{Conn: tc, greeting: strings.NewReader("220 " + s.host.name + "\r\n")})
	if err := s.client.Hello(t.cfg.HeloName); err != nil {
		if isReply(err) {
			return &stageError{stageGreeting, err}
		}
		// A TLS 1.3 server reports its handshake failures (and some
		// servers their TLS trouble) only on the first exchange.
		return &stageError{stageTLS, err}
	}
	return nil
}

func (t *Transport) handshake(ctx context.Context, conn net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, t.cfg.CommandTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, err
	}
	return tc, nil
}

func (t *Transport) newClient(conn net.Conn) *smtp.Client {
	c := smtp.NewClient(conn)
	c.CommandTimeout = t.cfg.CommandTimeout
	c.SubmissionTimeout = t.cfg.DataTimeout
	return c
}

// replyError converts a reply read outside go-smtp as go-smtp does.
func replyError(e *textproto.Error) *smtp.SMTPError {
	se := &smtp.SMTPError{Code: e.Code, Message: e.Msg}
	if first, rest, ok := strings.Cut(e.Msg, " "); ok && isEnhanced(first, byte('0'+e.Code/100)) {
		var ec smtp.EnhancedCode
		parts := strings.Split(first, ".")
		for i := range ec {
			for _, c := range parts[i] {
				ec[i] = ec[i]*10 + int(c-'0')
			}
		}
		se.EnhancedCode, se.Message = ec, rest
	}
	return se
}

// greetedConn gives go-smtp's Client a greeting to read on a connection
// whose greeting was read before STARTTLS.
type greetedConn struct {
	net.Conn
	greeting *strings.Reader
}

func (c *greetedConn) Read(p []byte) (int, error) {
	if c.greeting.Len() > 0 {
		return c.greeting.Read(p)
	}
	return c.Conn.Read(p)
}

// watch makes the end of ctx close s, until s.release.
func (s *session) watch(ctx context.Context) {
	conn := s.conn
	s.stop = context.AfterFunc(ctx, func() { conn.Close() })
}

// release detaches s from the ctx it was watched with and reports whether s
// is still usable (ctx did not close it).
func (s *session) release() bool {
	return s.stop()
}

// close drops the connection without QUIT.
func (s *session) close() {
	s.stop()
	s.conn.Close()
}

// quit closes s politely, waiting at most quitTimeout for QUIT's reply. QUIT
// is sent here rather than with go-smtp's Client.Quit, which after a RSET
// would send EHLO first.
func (t *Transport) quit(s *session) {
	s.stop()
	s.conn.SetDeadline(time.Now().Add(min(t.cfg.CommandTimeout, quitTimeout)))
	if _, err := io.WriteString(s.rw, "QUIT\r\n"); err == nil {
		textproto.NewReader(bufio.NewReader(s.rw)).ReadResponse(221)
	}
	s.conn.Close()
}
