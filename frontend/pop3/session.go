package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mailcluster/directory"
	"mailcluster/frontend/fault"
	"mailcluster/frontend/pool"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// POP3 session states (RFC 1939 section 3). UPDATE is entered only inside
// QUIT and never waits for a command.
type state uint8

const (
	stateAuth  state = 1 << iota // AUTHORIZATION
	stateTrans                   // TRANSACTION
	stateAny   = stateAuth | stateTrans
)

// errSizeChanged: a body is longer than its size at login.
var errSizeChanged = errors.New("pop3: body longer than its recorded size")

// withAccountCtx is pool.WithAccount: the account header on every call.
var withAccountCtx = pool.WithAccount

// errClose ends a session after its last response has been written.
var errClose = errors.New("pop3: close")

// errShutdown: the server is shutting down and interrupted the wait for a
// command.
var errShutdown = errors.New("pop3: server shutting down")

// message is one message of the maildrop, as it was at login.
type message struct {
	uid  uint32
	size int64
	// marks
	deleted   bool // DELE
	retrieved bool // RETR: \Seen is set at QUIT
	// flags at login
	wasDeleted bool
	wasSeen    bool
}

type session struct {
	srv *Server
	log *slog.Logger

	// conn is replaced only by the session's goroutine (STLS); Shutdown
	// reads it with srv.mu held. idle and interrupted are guarded by srv.mu.
	conn        net.Conn
	idle        bool
	interrupted bool

	ctx    context.Context
	cancel context.CancelFunc
	br     *bufio.Reader
	bw     *bufio.Writer
	out    []byte // response being formatted
	result string // of the last response, for metrics
	tls    bool
	client netip.Addr

	state     state
	user      string // from USER
	commands  int    // commands before login
	bad       int    // bad commands
	authFails int

	account     directory.AccountInfo
	mailboxID   int64
	uidValidity uint32
	last        *pool.Backend // of the last call, to mark down
	msgs        []message
	ahead       map[int]*ahead // bodies read ahead, by message index
	live        int            // messages not marked deleted
	liveSize    int64          // their octets
}

func newSession(srv *Server, c net.Conn) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{srv: srv, conn: c, ctx: ctx, cancel: cancel, state: stateAuth, client: clientAddr(c)}
	s.log = srv.log.With("conn", srv.ids.Add(1), "client", s.client)
	s.br = bufio.NewReaderSize(c, 4096)
	s.bw = bufio.NewWriterSize(deadlineWriter{s}, 32<<10)
	return s
}

// deadlineWriter writes to the session's current connection with a write
// deadline of the idle timeout per write, so that a client that stops
// reading is dropped.
type deadlineWriter struct{ s *session }

func (w deadlineWriter) Write(p []byte) (int, error) {
	w.s.conn.SetWriteDeadline(time.Now().Add(w.s.srv.cfg.IdleTimeout))
	return w.s.conn.Write(p)
}

// interruptLocked makes a session that waits for a command stop waiting
// (graceful shutdown). srv.mu is held.
func (s *session) interruptLocked() {
	s.interrupted = true
	if s.idle {
		s.conn.SetReadDeadline(time.Now())
	}
}

// abortLocked ends a session at once. srv.mu is held.
func (s *session) abortLocked() {
	s.cancel()
	s.conn.Close()
}

func (s *session) serve() {
	s.srv.metrics.sessions.Inc()
	defer s.srv.metrics.sessions.Dec()
	defer func() {
		s.cancel()
		s.dropAhead()
		s.conn.Close()
	}()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in POP3 session", "panic", r)
		}
	}()
	if tc, ok := isTLS(s.conn); ok {
		tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		if err := tc.HandshakeContext(s.ctx); err != nil {
			s.log.Debug("TLS handshake", "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
		s.tls = true
	}
	s.ok(s.srv.cfg.Hostname + " POP3 ready.")
	for {
		line, err := s.readLine()
		if err != nil {
			s.readFailed(err)
			return
		}
		if err := s.command(line); err != nil {
			if !errors.Is(err, errClose) {
				s.log.Debug("session ends", "err", err)
			}
			s.flush()
			return
		}
	}
}

// readFailed answers what can be answered when no command could be read.
func (s *session) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errShutdown):
		s.err(CodeSysTemp, "Server shutting down, try again later.")
	case errors.Is(err, ErrLineTooLong):
		s.log.Debug("line too long")
		s.err(CodeNone, "Line too long.")
	case errors.As(err, &ne) && ne.Timeout():
		s.err(CodeNone, "Disconnected for inactivity.")
	default:
		return // the client is gone
	}
	s.flush()
}

// readLine flushes pending responses when no further pipelined command is
// buffered, then reads one line within the idle timeout.
func (s *session) readLine() ([]byte, error) {
	if s.br.Buffered() == 0 {
		if err := s.flush(); err != nil {
			return nil, err
		}
	}
	mu := &s.srv.mu
	mu.Lock()
	if s.interrupted {
		mu.Unlock()
		return nil, errShutdown
	}
	s.idle = true
	s.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.IdleTimeout))
	mu.Unlock()
	line, err := ReadLine(s.br, s.srv.cfg.MaxLineLength)
	mu.Lock()
	s.idle = false
	interrupted := s.interrupted
	mu.Unlock()
	if err != nil && interrupted && errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, errShutdown
	}
	return line, err
}

func (s *session) flush() error { return s.bw.Flush() }

func (s *session) ok(text string) {
	s.result = "ok"
	s.out = AppendOK(s.out[:0], text)
	s.bw.Write(s.out)
}

func (s *session) err(code RespCode, text string) {
	s.result = "err"
	if code == CodeSysTemp {
		s.result = "temporary"
	}
	s.out = AppendErr(s.out[:0], code, text)
	s.bw.Write(s.out)
}

func (s *session) line(format string, args ...any) {
	s.out = fmt.Appendf(s.out[:0], format, args...)
	s.out = append(s.out, "\r\n"...)
	s.bw.Write(s.out)
}

// badCommand answers a command that is unknown, malformed or not valid in
// this state, and closes the session after too many.
func (s *session) badCommand(text string) error {
	s.bad++
	if s.bad >= s.srv.cfg.MaxBadCommands {
		s.err(CodeNone, "Too many invalid commands.")
		return errClose
	}
	s.err(CodeNone, text)
	return nil
}

type handler struct {
	states state
	fn     func(s *session, c Command) error
}

// commands is the dispatch table; the allowed states are checked once, in
// command.
var commands map[string]handler

func init() {
	commands = map[string]handler{
		"CAPA": {stateAny, (*session).cmdCapa},
		"NOOP": {stateTrans, (*session).cmdNoop},
		"QUIT": {stateAny, (*session).cmdQuit},
		"STLS": {stateAuth, (*session).cmdStls},
		"USER": {stateAuth, (*session).cmdUser},
		"PASS": {stateAuth, (*session).cmdPass},
		"AUTH": {stateAuth, (*session).cmdAuth},
		"APOP": {stateAuth, (*session).cmdApop},
		"STAT": {stateTrans, (*session).cmdStat},
		"LIST": {stateTrans, (*session).cmdList},
		"UIDL": {stateTrans, (*session).cmdUidl},
		"RETR": {stateTrans, (*session).cmdRetr},
		"TOP":  {stateTrans, (*session).cmdTop},
		"DELE": {stateTrans, (*session).cmdDele},
		"RSET": {stateTrans, (*session).cmdRset},
	}
}

func (s *session) command(line []byte) error {
	if s.state == stateAuth {
		s.commands++
		if s.commands > s.srv.cfg.MaxAuthCommands {
			s.err(CodeNone, "Too many commands before authentication.")
			return errClose
		}
	}
	start := time.Now()
	c, err := ParseCommand(line)
	if err != nil {
		defer s.srv.metrics.command("invalid", start, "err")
		return s.badCommand("Invalid command.")
	}
	h, ok := commands[c.Name]
	if !ok {
		defer s.srv.metrics.command("invalid", start, "err")
		return s.badCommand("Unknown command.")
	}
	defer func() { s.srv.metrics.command(c.Name, start, s.result) }()
	if h.states&s.state == 0 {
		return s.badCommand("Command not valid in this state.")
	}
	return h.fn(s, c)
}

// authAllowed: USER/PASS and AUTH need TLS unless configured otherwise.
func (s *session) authAllowed() bool { return s.tls || s.srv.cfg.InsecureAuth }

func (s *session) cmdCapa(c Command) error {
	s.ok("Capability list follows")
	s.line("TOP")
	s.line("UIDL")
	s.line("RESP-CODES")
	s.line("AUTH-RESP-CODE")
	s.line("PIPELINING")
	if s.state == stateAuth {
		if s.authAllowed() {
			s.line("USER")
			s.line("SASL PLAIN")
		}
		if !s.tls && s.srv.cfg.TLS != nil {
			s.line("STLS")
		}
	}
	s.line(".")
	return nil
}

func (s *session) cmdNoop(c Command) error {
	s.ok("")
	return nil
}

func (s *session) cmdStls(c Command) error {
	if s.tls {
		s.err(CodeNone, "TLS is already active.")
		return nil
	}
	if s.srv.cfg.TLS == nil {
		s.err(CodeNone, "TLS is not available.")
		return nil
	}
	s.ok("Begin TLS negotiation now.")
	if err := s.flush(); err != nil {
		return err
	}
	// Commands pipelined after STLS were sent in plaintext: discard them
	// (RFC 2595 section 4, the STARTTLS command-injection lesson).
	s.br.Discard(s.br.Buffered())
	tc := tls.Server(s.conn, s.srv.cfg.TLS)
	tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	if err := tc.HandshakeContext(s.ctx); err != nil {
		s.log.Debug("STLS handshake", "err", err)
		return errClose
	}
	tc.SetDeadline(time.Time{})
	s.srv.mu.Lock()
	s.conn = tc
	s.srv.mu.Unlock()
	s.br.Reset(tc)
	s.bw.Reset(deadlineWriter{s})
	s.tls = true
	s.user = ""
	return nil
}

const msgPlaintext = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."

func (s *session) cmdUser(c Command) error {
	if !s.authAllowed() {
		s.err(CodeAuth, msgPlaintext)
		return nil
	}
	if len(c.Args) != 1 {
		return s.badCommand("USER needs one argument.")
	}
	s.user = c.Args[0]
	s.ok("")
	return nil
}

func (s *session) cmdPass(c Command) error {
	if !s.authAllowed() {
		s.err(CodeAuth, msgPlaintext)
		return nil
	}
	if s.user == "" {
		s.err(CodeNone, "No username given.")
		return nil
	}
	user := s.user
	s.user = ""
	return s.login(user, c.Rest)
}

// cmdApop: APOP is not offered: it needs the plaintext password on the
// server (the directory only verifies passwords by LDAP bind) and MD5
// challenge-response is obsolete; with TLS, USER/PASS and AUTH PLAIN are
// safe.
func (s *session) cmdApop(c Command) error {
	s.err(CodeNone, "APOP is not supported.")
	return nil
}

func (s *session) cmdAuth(c Command) error {
	if len(c.Args) == 0 {
		// A list of mechanisms, as some clients ask (before RFC 5034).
		s.ok("")
		if s.authAllowed() {
			s.line("PLAIN")
		}
		s.line(".")
		return nil
	}
	if !strings.EqualFold(c.Args[0], "PLAIN") || len(c.Args) > 2 {
		s.err(CodeNone, "Unsupported authentication mechanism.")
		return nil
	}
	if !s.authAllowed() {
		s.err(CodeAuth, msgPlaintext)
		return nil
	}
	var resp string
	if len(c.Args) == 2 {
		resp = c.Args[1]
	} else {
		s.bw.WriteString("+ \r\n")
		line, err := s.readLine()
		if err != nil {
			s.readFailed(err)
			return errClose
		}
		resp = string(line)
	}
	if resp == "*" {
		s.err(CodeNone, "Authentication canceled.")
		return nil
	}
	authz, authc, pass, err := DecodePlain(resp)
	if err != nil {
		s.err(CodeNone, "Invalid SASL PLAIN response.")
		return nil
	}
	if authz != "" && authz != authc {
		// No proxy authorization: fail like bad credentials.
		return s.authFailed()
	}
	return s.login(authc, pass)
}

// login authenticates and opens the maildrop.
func (s *session) login(user, pass string) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.BackendTimeout)
	acc, err := s.srv.auth.Authenticate(ctx, user, pass, s.client)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, directory.ErrBadCredentials):
		s.srv.metrics.logins.WithLabelValues("bad-credentials").Inc()
		s.log.Debug("login failed", "user", user)
		return s.authFailed()
	case errors.Is(err, directory.ErrDisabled):
		s.srv.metrics.logins.WithLabelValues("disabled").Inc()
		s.log.Info("login to a disabled account", "account", acc.ID)
		s.err(CodeSysPerm, "Account disabled.")
		return nil
	case s.ctx.Err() != nil:
		return errClose
	default:
		s.srv.metrics.logins.WithLabelValues("temporary").Inc()
		s.log.Warn("directory unavailable for login", "err", err)
		s.err(CodeSysTemp, "Temporary authentication failure, try again later.")
		return nil
	}
	s.account = acc
	s.log = s.log.With("account", acc.ID)
	if err := s.openMaildrop(); err != nil {
		s.srv.metrics.logins.WithLabelValues("temporary").Inc()
		return s.fail("open maildrop", err, "")
	}
	s.srv.metrics.logins.WithLabelValues("ok").Inc()
	s.log.Info("logged in", "messages", len(s.msgs), "octets", s.liveSize, "tls", s.tls)
	s.state = stateTrans
	s.ok(fmt.Sprintf("Logged in, %d messages (%d octets).", s.live, s.liveSize))
	return nil
}

func (s *session) authFailed() error {
	s.authFails++
	if d := s.srv.cfg.AuthFailureDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return errClose
		}
	}
	s.err(CodeAuth, "Authentication failed.")
	if s.authFails >= s.srv.cfg.MaxAuthFailures {
		return errClose
	}
	return nil
}

// backend returns the account's backend client and a context for one call
// that carries the account header.
func (s *session) backend() (mailboxv1.MailboxClient, context.Context, context.CancelFunc, error) {
	b, err := s.srv.router.Route(s.account.ID, s.account.Backend)
	if err != nil {
		return nil, nil, nil, err
	}
	s.last = b
	ctx, cancel := context.WithTimeout(withAccountCtx(s.ctx, s.account.ID), s.srv.cfg.BackendTimeout)
	return b.Client, ctx, cancel, nil
}

// openMaildrop takes the INBOX as it is now, with one Maildrop call: its
// id, UIDVALIDITY and every message's UID, size and flags, from one
// snapshot, or the newest Config.MaxMessages of them. Messages are numbered
// in UID order; a message delivered later is not part of this session.
func (s *session) openMaildrop() error {
	cl, ctx, cancel, err := s.backend()
	if err != nil {
		return err
	}
	defer cancel()
	st, err := cl.Maildrop(ctx, &mailboxv1.MaildropRequest{AccountId: s.account.ID, Name: "INBOX"})
	if err != nil {
		return err
	}
	s.msgs, s.live, s.liveSize = nil, 0, 0
	limited := false
	for {
		resp, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		uids, sizes, flags := resp.Uids, resp.Sizes, resp.SystemFlags
		if len(sizes) != len(uids) || len(flags) != len(uids) {
			return fmt.Errorf("pop3: Maildrop response with %d uids, %d sizes, %d flags", len(uids), len(sizes), len(flags))
		}
		if s.msgs == nil {
			s.mailboxID, s.uidValidity = resp.MailboxId, resp.UidValidity
			s.msgs = make([]message, 0, len(uids))
		}
		for i, uid := range uids {
			s.msgs = append(s.msgs, message{uid: uid, size: sizes[i],
				wasDeleted: flags[i]&uint32(mailboxv1.Flag_FLAG_DELETED) != 0,
				wasSeen:    flags[i]&uint32(mailboxv1.Flag_FLAG_SEEN) != 0})
		}
		if max := s.srv.cfg.MaxMessages; max > 0 && len(s.msgs) >= 2*max {
			// Keep the newest max (UIDs come in ascending order), so
			// that no more than twice that and one response is held
			// while reading.
			s.msgs = append(s.msgs[:0], s.msgs[len(s.msgs)-max:]...)
			limited = true
		}
	}
	if max := s.srv.cfg.MaxMessages; max > 0 && len(s.msgs) > max {
		s.msgs = append(s.msgs[:0], s.msgs[len(s.msgs)-max:]...)
		limited = true
	}
	if limited {
		s.msgs = slices.Clone(s.msgs) // not the trimmed array's capacity, for the whole session
		s.log.Warn("maildrop limited to the newest messages", "limit", s.srv.cfg.MaxMessages)
		s.srv.metrics.limited.Inc()
	}
	for _, m := range s.msgs {
		s.liveSize += m.size
	}
	s.live = len(s.msgs)
	if s.msgs == nil {
		return errors.New("pop3: Maildrop sent no response")
	}
	return nil
}

// fail answers a failed directory or backend call: the one table from error
// to POP3 response. notFound is the text for a message that no longer
// exists (removed by another session); internal error text never reaches
// the client.
func (s *session) fail(op string, err error, notFound string) error {
	if s.ctx.Err() != nil {
		return errClose // the session is being closed
	}
	switch fault.Of(err) {
	case fault.NotFound:
		if notFound != "" {
			s.log.Debug(op, "err", err)
			s.err(CodeNone, notFound)
			return nil
		}
	case fault.Config:
		s.log.Error(op+": backend refused the frontend (configuration)", "err", err)
		s.err(CodeSysTemp, "Temporary server failure, try again later.")
		return nil
	}
	s.unavailable(err)
	s.log.Warn(op, "err", err)
	s.err(CodeSysTemp, "Temporary server failure, try again later.")
	return nil
}

// unavailable marks the last backend down when err says it is unreachable.
func (s *session) unavailable(err error) {
	if s.last != nil && status.Code(err) == codes.Unavailable {
		s.srv.router.MarkDown(s.last)
	}
}

// msgArg parses a message number argument and answers the errors; m is nil
// when there is no usable message.
func (s *session) msgArg(arg string) (*message, int) {
	n, ok := ParseNumber(arg)
	if !ok {
		s.err(CodeNone, "Invalid message number.")
		return nil, 0
	}
	if n < 1 || n > len(s.msgs) {
		s.err(CodeNone, fmt.Sprintf("There's no message %d.", n))
		return nil, 0
	}
	m := &s.msgs[n-1]
	if m.deleted {
		s.err(CodeNone, "Message is deleted.")
		return nil, 0
	}
	return m, n
}

func (s *session) cmdStat(c Command) error {
	if len(c.Args) != 0 {
		return s.badCommand("STAT takes no arguments.")
	}
	s.ok(fmt.Sprintf("%d %d", s.live, s.liveSize))
	return nil
}

func (s *session) cmdList(c Command) error {
	switch len(c.Args) {
	case 0:
		s.ok(fmt.Sprintf("%d messages (%d octets)", s.live, s.liveSize))
		for i := range s.msgs {
			if m := &s.msgs[i]; !m.deleted {
				s.line("%d %d", i+1, m.size)
			}
		}
		s.line(".")
	case 1:
		if m, n := s.msgArg(c.Args[0]); m != nil {
			s.ok(fmt.Sprintf("%d %d", n, m.size))
		}
	default:
		return s.badCommand("Too many arguments.")
	}
	return nil
}

// uidl is a message's unique id: Dovecot's default format %08Xu%08Xv (UID
// then UIDVALIDITY in hex), so that it is the same in every session, through
// every backend (both numbers live in PostgreSQL) and for users migrated
// from Dovecot with the default pop3_uidl_format.
func (s *session) uidl(m *message) string {
	return fmt.Sprintf("%08X%08X", m.uid, s.uidValidity)
}

func (s *session) cmdUidl(c Command) error {
	switch len(c.Args) {
	case 0:
		s.ok("")
		for i := range s.msgs {
			if m := &s.msgs[i]; !m.deleted {
				s.line("%d %s", i+1, s.uidl(m))
			}
		}
		s.line(".")
	case 1:
		if m, n := s.msgArg(c.Args[0]); m != nil {
			s.ok(fmt.Sprintf("%d %s", n, s.uidl(m)))
		}
	default:
		return s.badCommand("Too many arguments.")
	}
	return nil
}

func (s *session) cmdRetr(c Command) error {
	if len(c.Args) != 1 {
		return s.badCommand("RETR needs one message number.")
	}
	m, n := s.msgArg(c.Args[0])
	if m == nil {
		return nil
	}
	s.readAhead(n - 1)
	return s.sendBody(m, n-1, -1)
}

func (s *session) cmdTop(c Command) error {
	if len(c.Args) != 2 {
		return s.badCommand("TOP needs a message number and a line count.")
	}
	lines, ok := ParseNumber(c.Args[1])
	if !ok {
		s.err(CodeNone, "Invalid number of lines.")
		return nil
	}
	m, n := s.msgArg(c.Args[0])
	if m == nil {
		return nil
	}
	return s.sendBody(m, n-1, lines)
}

// sendBody streams a message (top < 0) or its header and top body lines as
// a multi-line response. "+OK" is sent only once the backend has sent the
// first piece, so that a missing message or an unavailable backend is an
// -ERR. If the stream breaks after that, the connection is closed without
// the terminating line, so that the client cannot take a truncated message
// for a whole one.
func (s *session) sendBody(m *message, i, top int) error {
	if data, ok := s.takeAhead(i, top < 0); ok && top < 0 {
		s.ok(fmt.Sprintf("%d octets", m.size))
		dw := NewDotWriter(s.bw)
		if _, err := dw.Write(data); err != nil {
			return err
		}
		m.retrieved = true
		s.srv.metrics.retrieved.Add(float64(dw.Written()))
		return dw.Close()
	}
	b, err := s.srv.router.Route(s.account.ID, s.account.Backend)
	if err != nil {
		return s.fail("route", err, "")
	}
	s.last = b
	ctx, cancel := context.WithCancel(withAccountCtx(s.ctx, s.account.ID))
	defer cancel()
	// The watchdog bounds each wait for the backend, not the time the
	// client takes to read.
	watchdog := time.AfterFunc(s.srv.cfg.BackendTimeout, cancel)
	defer watchdog.Stop()
	st, err := b.Client.GetBody(ctx, &mailboxv1.GetBodyRequest{AccountId: s.account.ID, MailboxId: s.mailboxID, Uid: m.uid})
	var chunk *mailboxv1.BodyChunk
	if err == nil {
		chunk, err = st.Recv()
	}
	if err == io.EOF {
		chunk, err = &mailboxv1.BodyChunk{}, nil // an empty body
	}
	if err != nil {
		return s.fail("GetBody", err, "Message was removed by another session.")
	}
	if top < 0 {
		s.ok(fmt.Sprintf("%d octets", m.size))
	} else {
		s.ok("")
	}
	dw := NewDotWriter(s.bw)
	var w io.Writer = dw
	var tf *TopFilter
	if top >= 0 {
		tf = NewTopFilter(dw, top)
		w = tf
	}
	for {
		watchdog.Stop()
		if _, err := w.Write(chunk.Data); err != nil {
			return err // the client is gone
		}
		if tf != nil && tf.Done() {
			break
		}
		watchdog.Reset(s.srv.cfg.BackendTimeout)
		chunk, err = st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			s.log.Warn("GetBody stream broke; closing the connection", "uid", m.uid, "err", err)
			return errors.Join(errClose, err)
		}
	}
	if top < 0 {
		if dw.Written() != m.size {
			s.log.Error("body size differs from LIST size", "uid", m.uid, "list", m.size, "sent", dw.Written())
		}
		m.retrieved = true
	}
	s.srv.metrics.retrieved.Add(float64(dw.Written()))
	return dw.Close()
}

func (s *session) cmdDele(c Command) error {
	if len(c.Args) != 1 {
		return s.badCommand("DELE needs one message number.")
	}
	m, n := s.msgArg(c.Args[0])
	if m == nil {
		return nil
	}
	m.deleted = true
	s.live--
	s.liveSize -= m.size
	s.ok(fmt.Sprintf("Message %d marked for deletion.", n))
	return nil
}

func (s *session) cmdRset(c Command) error {
	for i := range s.msgs {
		if m := &s.msgs[i]; m.deleted {
			m.deleted = false
			s.live++
			s.liveSize += m.size
		}
	}
	s.ok(fmt.Sprintf("%d messages (%d octets).", s.live, s.liveSize))
	return nil
}

func (s *session) cmdQuit(c Command) error {
	if s.state == stateAuth {
		s.ok("Logging out.")
		return errClose
	}
	if err := s.update(); err != nil {
		s.log.Warn("UPDATE failed; nothing acknowledged", "err", err)
		if s.ctx.Err() == nil {
			s.err(CodeSysTemp, "Some deleted messages were not removed, try again later.")
		}
		return errClose
	}
	s.ok("Logging out.")
	return errClose
}

// update is the UPDATE state (RFC 1939 section 6): the messages marked with
// DELE get \Deleted and are expunged by exactly that UID set (a message
// another client marked \Deleted is left alone); only when both calls have
// returned is the removal durable and QUIT answered +OK. Then retrieved
// messages get \Seen, best effort. If the expunge fails, \Deleted is taken
// off the messages that did not have it at login, best effort, so that an
// IMAP client does not see them as deleted.
func (s *session) update() error {
	var del, seen uidSet
	var undo uidSet
	for i := range s.msgs {
		m := &s.msgs[i]
		switch {
		case m.deleted:
			del.add(m.uid)
			if !m.wasDeleted {
				undo.add(m.uid)
			}
		case m.retrieved && !m.wasSeen:
			seen.add(m.uid)
		}
	}
	if len(del.ranges) > 0 {
		cl, ctx, cancel, err := s.backend()
		if err != nil {
			return err
		}
		defer cancel()
		_, err = cl.StoreFlags(ctx, &mailboxv1.StoreFlagsRequest{AccountId: s.account.ID, MailboxId: s.mailboxID,
			Uids: del.proto(), Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_DELETED)}})
		if err != nil {
			return err
		}
		resp, err := cl.Expunge(ctx, &mailboxv1.ExpungeRequest{AccountId: s.account.ID, MailboxId: s.mailboxID, Uids: del.proto()})
		if err != nil {
			s.undoDeleted(undo)
			return err
		}
		s.srv.metrics.expunged.Add(float64(len(resp.Expunged)))
		s.log.Info("messages expunged at QUIT", "marked", len(s.msgs)-s.live, "expunged", len(resp.Expunged))
	}
	if len(seen.ranges) > 0 {
		cl, ctx, cancel, err := s.backend()
		if err == nil {
			_, err = cl.StoreFlags(ctx, &mailboxv1.StoreFlagsRequest{AccountId: s.account.ID, MailboxId: s.mailboxID,
				Uids: seen.proto(), Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_SEEN)}})
			cancel()
		}
		if err != nil {
			s.log.Warn("setting \\Seen on retrieved messages", "err", err)
		}
	}
	return nil
}

func (s *session) undoDeleted(undo uidSet) {
	if len(undo.ranges) == 0 {
		return
	}
	cl, ctx, cancel, err := s.backend()
	if err == nil {
		_, err = cl.StoreFlags(ctx, &mailboxv1.StoreFlagsRequest{AccountId: s.account.ID, MailboxId: s.mailboxID,
			Uids: undo.proto(), Mode: mailboxv1.StoreMode_STORE_MODE_REMOVE, Flags: &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_DELETED)}})
		cancel()
	}
	if err != nil {
		s.log.Warn("taking \\Deleted off after a failed expunge", "err", err)
	}
}

// uidSet collects ascending UIDs into ranges.
type uidSet struct{ ranges [][2]uint32 }

func (u *uidSet) add(uid uint32) {
	if n := len(u.ranges); n > 0 && u.ranges[n-1][1]+1 == uid {
		u.ranges[n-1][1] = uid
		return
	}
	u.ranges = append(u.ranges, [2]uint32{uid, uid})
}

func (u *uidSet) proto() *mailboxv1.UIDSet {
	out := &mailboxv1.UIDSet{Ranges: make([]*mailboxv1.UIDRange, len(u.ranges))}
	for i, r := range u.ranges {
		out.Ranges[i] = &mailboxv1.UIDRange{Start: r[0], End: r[1]}
	}
	return out
}
