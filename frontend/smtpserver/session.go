package smtpserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mailcluster/directory"
	"mailcluster/frontend/fault"
	"mailcluster/frontend/listener"
	"mailcluster/frontend/pool"
	"mailcluster/internal/mailaddr"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// session is one client's SMTP session (from EHLO until QUIT, STARTTLS or
// disconnect). Its context ends at Logout, which stops in-flight calls.
type session struct {
	s      *Server
	conn   *smtp.Conn
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger
	ip     netip.Addr
	helo   string

	account      *directory.AccountInfo // after AUTH
	authFailures int
	badRcpts     int // refused RCPT, VRFY and EXPN
	lookups      int // VRFY and EXPN

	// mu guards tx: with BDAT, go-smtp runs Data in its own goroutine and
	// may call Reset (RSET, connection end) while it runs.
	mu sync.Mutex
	tx transaction
}

// transaction is what MAIL and RCPT collected for one message.
type transaction struct {
	from     string
	mailOpts smtp.MailOptions
	rcpts    []*mailboxv1.Recipient // one per account, in RCPT order
	routes   []string               // mailHost of each recipient
	seen     map[string]bool        // account ids in rcpts, and remote addresses
	remote   []string               // remote recipients, for the outbound queue
	rcptAddr []string               // accepted RCPT addresses, for the Received header
}

var (
	_ smtp.AuthSession = (*session)(nil)
	_ smtp.VrfySession = (*session)(nil)
)

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	helo := c.Hostname()
	if !validHelo(helo) {
		return nil, errBadHelo
	}
	ctx, cancel := context.WithCancel(context.Background())
	ip := listener.ClientIP(c.Conn())
	sess := &session{s: s, conn: c, ctx: ctx, cancel: cancel, ip: ip, helo: helo,
		log: s.log.With("conn", newID(), "client", ip.String())}
	sess.log.Debug("session", "helo", helo)
	s.cfg.Metrics.sessions.WithLabelValues(s.cfg.Mode.String()).Inc()
	return sess, nil
}

// validHelo accepts a domain or an address literal of printable ASCII, at
// most 255 bytes (RFC 5321 4.1.1.1, 4.5.3.1.2).
func validHelo(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if h[i] <= ' ' || h[i] >= 0x7f {
			return false
		}
	}
	return true
}

// Logout ends the session: in-flight calls are canceled.
func (ss *session) Logout() error {
	ss.cancel()
	return nil
}

// Reset forgets the transaction (RSET, EHLO, end of DATA).
func (ss *session) Reset() {
	ss.mu.Lock()
	ss.tx = transaction{}
	ss.mu.Unlock()
}

// closeSoon closes the connection shortly after the current reply is
// written: go-smtp has no way for a session to end the connection itself.
func (ss *session) closeSoon() {
	c := ss.conn.Conn()
	time.AfterFunc(200*time.Millisecond, func() { c.Close() })
}

// --- AUTH (RFC 4954) ---

// AuthMechanisms lists PLAIN and LOGIN on submission listeners; go-smtp
// advertises them only after TLS (or with InsecureAuth).
func (ss *session) AuthMechanisms() []string {
	if ss.s.cfg.Mode != Submission {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth starts a SASL exchange. Every error it or the exchange returns is an
// *smtp.SMTPError.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.cfg.Mode != Submission {
		return nil, errAuthNotHere
	}
	if ss.s.cfg.MaxAuthFailures > 0 && ss.authFailures >= ss.s.cfg.MaxAuthFailures {
		ss.closeSoon()
		return nil, errAuthTooMany
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return &plainServer{ss: ss}, nil
	case sasl.Login:
		return &loginServer{ss: ss}, nil
	}
	return nil, errAuthNoMech
}

// authenticate checks a login and password with the directory, which delays
// repeated failures per login and client address.
func (ss *session) authenticate(authzid, login, password string) error {
	if authzid != "" && authzid != login {
		ss.authFailures++
		return errAuthzid
	}
	ctx, cancel := context.WithTimeout(ss.ctx, ss.s.cfg.BackendTimeout+30*time.Second)
	defer cancel()
	acc, err := ss.s.dir.Authenticate(ctx, login, password, ss.ip)
	result := "temporary"
	if err == nil {
		result = "ok"
	} else if errors.Is(err, directory.ErrBadCredentials) || errors.Is(err, directory.ErrDisabled) {
		result = "failed"
	}
	ss.s.cfg.Metrics.auth.WithLabelValues(result).Inc()
	switch {
	case err == nil:
		ss.account = &acc
		ss.log = ss.log.With("account", acc.ID)
		ss.log.Info("authenticated", "login", login)
		return nil
	case errors.Is(err, directory.ErrBadCredentials), errors.Is(err, directory.ErrDisabled):
		ss.authFailures++
		ss.log.Info("authentication failed", "login", login, "disabled", errors.Is(err, directory.ErrDisabled), "failures", ss.authFailures)
		if ss.s.cfg.MaxAuthFailures > 0 && ss.authFailures >= ss.s.cfg.MaxAuthFailures {
			ss.closeSoon()
			return errAuthTooMany
		}
		return errAuthFailed
	}
	ss.log.Warn("authentication: directory unavailable", "err", err)
	return errAuthTemp
}

// plainServer is SASL PLAIN (RFC 4616).
type plainServer struct {
	ss   *session
	done bool
}

func (p *plainServer) Next(resp []byte) ([]byte, bool, error) {
	if p.done {
		return nil, true, errAuthSyntax
	}
	if resp == nil {
		return []byte{}, false, nil // ask for the initial response
	}
	p.done = true
	parts := strings.Split(string(resp), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		p.ss.authFailures++
		return nil, true, errAuthSyntax
	}
	return nil, true, p.ss.authenticate(parts[0], parts[1], parts[2])
}

// loginServer is the obsolete but common LOGIN mechanism
// (draft-murchison-sasl-login).
type loginServer struct {
	ss       *session
	step     int
	username string
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough // initial response carries the user name
	case 1:
		l.username = string(resp)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.ss.authenticate("", l.username, string(resp))
	}
	return nil, true, errAuthSyntax
}

// --- MAIL ---

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.s.cfg.Mode == Submission && ss.account == nil {
		return errAuthRequired
	}
	if len(from) > 256 {
		return errPathTooLong
	}
	if !printable(from) {
		return errBadSender
	}
	if h := ss.conn.Hostname(); h != ss.helo {
		// A later EHLO (go-smtp resets the session without asking us).
		if !validHelo(h) {
			return errBadHelo
		}
		ss.helo = h
	}
	if ss.s.cfg.Mode == Submission && ss.s.cfg.SenderCheck {
		if err := ss.checkSender(from); err != nil {
			return err
		}
	}
	tx := transaction{from: from}
	if opts != nil {
		tx.mailOpts = *opts
	}
	ss.mu.Lock()
	ss.tx = tx
	ss.mu.Unlock()
	return nil
}

// checkSender accepts only an address that resolves to the authenticated
// account (its primary address, an alias, or one of those with a
// subaddress).
func (ss *session) checkSender(from string) error {
	if from == "" {
		return errNotYourAddress
	}
	ctx, cancel := context.WithTimeout(ss.ctx, ss.s.cfg.BackendTimeout)
	defer cancel()
	res, err := ss.s.dir.Resolve(ctx, from)
	switch {
	case err == nil:
	case errors.Is(err, directory.ErrInvalidAddress):
		return errBadSender
	default:
		ss.log.Warn("sender check: directory unavailable", "err", err)
		return errDirectoryDown
	}
	if (res.Kind == directory.Account || res.Kind == directory.Forward) && res.Account.ID == ss.account.ID {
		return nil
	}
	ss.log.Info("sender refused", "from", from)
	return errNotYourAddress
}

// printable reports whether s has no control characters (NUL, CR, LF, …).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// --- RCPT ---

// target is an account a recipient address leads to, or a remote address
// (when remote is set) for the outbound queue.
type target struct {
	acc    directory.AccountInfo
	remote string
}

// key identifies a target within one transaction.
func (t target) key() string {
	if t.remote != "" {
		return "remote:" + t.remote
	}
	return t.acc.ID
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if ss.s.cfg.MaxBadRecipients > 0 && ss.badRcpts >= ss.s.cfg.MaxBadRecipients {
		ss.closeSoon()
		return errTooManyBad
	}
	err := ss.rcpt(to)
	ss.s.cfg.Metrics.recipients.WithLabelValues(ss.s.cfg.Mode.String(), replyLabel(err)).Inc()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			ss.badRcpts++
		}
		ss.log.Debug("recipient refused", "to", to, "code", se.Code)
		return err
	}
	return nil
}

func (ss *session) rcpt(to string) error {
	if len(to) > 256 {
		return errPathTooLong
	}
	if !printable(to) || to == "" {
		return errBadAddress
	}
	ctx, cancel := context.WithTimeout(ss.ctx, ss.s.cfg.BackendTimeout)
	defer cancel()
	targets, err := ss.expand(ctx, to, 0, map[string]bool{})
	if err != nil {
		return err
	}
	ss.mu.Lock()
	tx := ss.tx
	ss.mu.Unlock()
	added := 0
	for _, t := range targets {
		if !tx.seen[t.key()] {
			added++
		}
	}
	if ss.s.cfg.MaxExpanded > 0 && len(tx.rcpts)+len(tx.remote)+added > ss.s.cfg.MaxExpanded {
		return errTooManyExpanded
	}
	for _, t := range targets {
		if tx.seen[t.key()] || t.remote != "" {
			continue
		}
		if err := ss.checkQuota(ctx, t.acc, tx.mailOpts.Size); err != nil {
			return err
		}
	}
	if tx.seen == nil {
		tx.seen = map[string]bool{}
	}
	for _, t := range targets {
		if tx.seen[t.key()] {
			continue
		}
		tx.seen[t.key()] = true
		if t.remote != "" {
			tx.remote = append(tx.remote, t.remote)
			continue
		}
		tx.rcpts = append(tx.rcpts, &mailboxv1.Recipient{AccountId: t.acc.ID, Address: to,
			Quota: &mailboxv1.Quota{StorageBytes: t.acc.Quota.StorageBytes, Messages: t.acc.Quota.Messages}})
		tx.routes = append(tx.routes, t.acc.Backend)
	}
	tx.rcptAddr = append(tx.rcptAddr, to)
	ss.mu.Lock()
	ss.tx = tx
	ss.mu.Unlock()
	return nil
}

// maxForwardDepth bounds how many forwards are followed from one address.
const maxForwardDepth = 5

// expand resolves an address to the local accounts that receive its mail
// (an account, a list's members, or where a forward points) and the remote
// addresses it leads to, which go to the outbound queue. A remote recipient
// given directly is accepted only from an authenticated client; on port 25
// it is relaying (554 5.7.1). Forwards configured in the directory may
// point anywhere.
func (ss *session) expand(ctx context.Context, addr string, depth int, visited map[string]bool) ([]target, error) {
	res, err := ss.s.dir.Resolve(ctx, addr)
	switch {
	case err == nil:
	case errors.Is(err, directory.ErrInvalidAddress):
		return nil, errBadAddress
	case errors.Is(err, directory.ErrListLimit):
		ss.log.Warn("list expansion limit", "address", addr, "err", err)
		return nil, errListLimit
	default:
		ss.log.Warn("recipient lookup: directory unavailable", "err", err)
		return nil, errDirectoryDown
	}
	if visited[res.Address] {
		return nil, nil // a forwarding loop adds nothing
	}
	visited[res.Address] = true
	switch res.Kind {
	case directory.NotLocal:
		if depth == 0 && ss.account == nil {
			return nil, errRelayDenied
		}
		remote := remoteAddress(res.Address)
		if !mailaddr.Queueable(remote) {
			return nil, errBadAddress
		}
		return []target{{remote: remote}}, nil
	case directory.Unknown:
		if depth > 0 {
			ss.log.Warn("forward to an unknown local address", "address", addr)
		}
		return nil, errNoSuchUser
	case directory.Account:
		if !res.Account.Enabled {
			return nil, errDisabled
		}
		return []target{{acc: res.Account}}, nil
	case directory.List:
		var out []target
		for _, m := range res.Members {
			out = append(out, target{acc: m})
		}
		return ss.follow(ctx, out, res.Forwards, depth, visited)
	case directory.Forward:
		if !res.Account.Enabled {
			return nil, errDisabled
		}
		return ss.follow(ctx, nil, res.Forwards, depth, visited)
	}
	return nil, errNoSuchUser
}

// remoteAddress is addr with its domain in lower case (domains are
// case-insensitive; the local part is the remote server's to interpret).
func remoteAddress(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	return addr[:at+1] + strings.ToLower(addr[at+1:])
}

// follow expands forwarding addresses and appends their targets to out.
func (ss *session) follow(ctx context.Context, out []target, forwards []string, depth int, visited map[string]bool) ([]target, error) {
	for _, f := range forwards {
		if depth >= maxForwardDepth {
			return nil, errListLimit
		}
		more, err := ss.expand(ctx, f, depth+1, visited)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

// checkQuota refuses a recipient whose account is already over its quota,
// or would be with the size announced in MAIL FROM (RFC 1870).
func (ss *session) checkQuota(ctx context.Context, acc directory.AccountInfo, size int64) error {
	q := acc.Quota
	if q.StorageBytes <= 0 && q.Messages <= 0 {
		return nil
	}
	// A read: if the backend turns out to be unreachable, it is marked
	// down and the check is asked once more of the backend routing picks
	// next (storage is shared), instead of deferring the sender.
	var used *mailboxv1.GetQuotaResponse
	for attempt := 0; ; attempt++ {
		b, err := ss.s.router.Route(acc.ID, acc.Backend)
		if err != nil {
			ss.log.Warn("quota check: no backend", "account", acc.ID, "err", err)
			return errBackendDownRcpt
		}
		used, err = b.Client.GetQuota(ctx, &mailboxv1.GetQuotaRequest{AccountId: acc.ID})
		if err == nil {
			break
		}
		k := fault.Of(err)
		if attempt == 0 && status.Code(err) == codes.Unavailable && ctx.Err() == nil {
			ss.s.router.MarkDown(b)
			continue
		}
		ss.log.Warn("quota check failed", "account", acc.ID, "backend", b.Name, "kind", k, "err", err)
		return rcptError(k)
	}
	if q.StorageBytes > 0 && used.StorageBytes+size > q.StorageBytes ||
		q.Messages > 0 && used.Messages >= q.Messages {
		return errOverQuotaRcpt
	}
	return nil
}

// --- VRFY and EXPN (RFC 5321 3.5) ---

// go-smtp calls Verify and Expand only on submission listeners with
// smtp-vrfy or smtp-expn on; they answer only authenticated users, each
// command counts against smtp-max-vrfy, and each refusal against
// smtp-max-bad-recipients, like a refused RCPT: an authenticated user
// learns nothing that RCPT would not tell.

// Verify answers VRFY: 250 with the address for a local mailbox, alias,
// forward or list that takes mail (what RCPT would accept), 550 5.1.1 for
// an unknown one, 252 for an address outside the local domains.
func (ss *session) Verify(arg string) (string, error) {
	addr, err := ss.lookupStart(arg)
	if err == nil {
		err = ss.verify(addr)
	}
	ss.lookupDone("VRFY", arg, err)
	if err != nil {
		return "", err
	}
	return addr, nil
}

func (ss *session) verify(addr string) error {
	ctx, cancel := context.WithTimeout(ss.ctx, ss.s.cfg.BackendTimeout)
	defer cancel()
	res, err := ss.resolveForLookup(ctx, addr)
	if err != nil {
		return err
	}
	if (res.Kind == directory.Account || res.Kind == directory.Forward) && !res.Account.Enabled {
		return errDisabled
	}
	return nil
}

// Expand answers EXPN with the addresses an address leads to, as RCPT
// would expand it: a list's members, where a forward points (remote
// addresses included), an account's primary address.
func (ss *session) Expand(arg string) ([]string, error) {
	addr, err := ss.lookupStart(arg)
	var out []string
	if err == nil {
		out, err = ss.expandForLookup(addr)
	}
	ss.lookupDone("EXPN", arg, err)
	return out, err
}

func (ss *session) expandForLookup(addr string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ss.ctx, ss.s.cfg.BackendTimeout)
	defer cancel()
	if _, err := ss.resolveForLookup(ctx, addr); err != nil {
		return nil, err
	}
	targets, err := ss.expand(ctx, addr, 0, map[string]bool{})
	if err == errBadAddress {
		err = errVrfySyntax
	}
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, t := range targets {
		a := t.remote
		if a == "" {
			a = t.acc.Address
		}
		if a == "" || seen[strings.ToLower(a)] {
			continue
		}
		seen[strings.ToLower(a)] = true
		out = append(out, a)
	}
	switch {
	case len(out) == 0:
		return nil, errListLimit // a list without members
	case ss.s.cfg.MaxExpanded > 0 && len(out) > ss.s.cfg.MaxExpanded:
		return nil, errTooManyExpanded
	}
	return out, nil
}

// resolveForLookup resolves the argument of VRFY or EXPN and refuses what
// neither answers with 250.
func (ss *session) resolveForLookup(ctx context.Context, addr string) (directory.Result, error) {
	res, err := ss.s.dir.Resolve(ctx, addr)
	switch {
	case err == nil:
	case errors.Is(err, directory.ErrInvalidAddress):
		return res, errVrfySyntax
	case errors.Is(err, directory.ErrListLimit):
		return res, errListLimit // a permanent refusal, as for RCPT
	default:
		ss.log.Warn("VRFY/EXPN lookup: directory unavailable", "err", err)
		return res, errDirectoryDown
	}
	switch res.Kind {
	case directory.Unknown:
		return res, errNoSuchUser
	case directory.NotLocal:
		return res, errCannotVerify
	}
	return res, nil
}

// lookupStart checks that the session may ask (authenticated, within the
// limits) and returns the address in the argument.
func (ss *session) lookupStart(arg string) (string, error) {
	if ss.account == nil {
		return "", errAuthRequired
	}
	ss.lookups++
	if ss.s.cfg.MaxVrfy > 0 && ss.lookups > ss.s.cfg.MaxVrfy {
		ss.closeSoon()
		return "", errVrfyTooMany
	}
	if ss.s.cfg.MaxBadRecipients > 0 && ss.badRcpts >= ss.s.cfg.MaxBadRecipients {
		ss.closeSoon()
		return "", errTooManyBad
	}
	addr, ok := lookupArgument(arg)
	if !ok {
		return "", errVrfySyntax
	}
	return addr, nil
}

// lookupDone counts a refusal as a bad recipient and logs the lookup (an
// operator looking for address harvesting finds them by "lookup").
func (ss *session) lookupDone(cmd, arg string, err error) {
	code := 250
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		code = se.Code
	}
	if code >= 500 {
		ss.badRcpts++
	}
	ss.log.Info("lookup", "command", cmd, "argument", sanitize(arg), "code", code)
}

// lookupArgument is the address in the argument of VRFY or EXPN: a mailbox
// (RFC 5321 4.1.1.6 allows a user name too; only addresses are looked up),
// maybe in angle brackets, maybe followed by SMTPUTF8 (RFC 6531 3.7.4).
func lookupArgument(arg string) (string, bool) {
	a := strings.TrimSpace(arg)
	if len(a) > len(" SMTPUTF8") && strings.EqualFold(a[len(a)-len(" SMTPUTF8"):], " SMTPUTF8") {
		a = strings.TrimSpace(a[:len(a)-len(" SMTPUTF8")])
	}
	if strings.HasPrefix(a, "<") && strings.HasSuffix(a, ">") {
		a = a[1 : len(a)-1]
	}
	at := strings.LastIndexByte(a, '@')
	if at < 1 || at == len(a)-1 || len(a) > 256 || !printable(a) || strings.ContainsAny(a, " <>") {
		return "", false
	}
	return a, true
}

// --- DATA and BDAT ---

// Data streams the message to one backend's Deliver with every recipient,
// checking it on the way, and answers 250 only when Deliver reports it
// stored for at least one recipient.
func (ss *session) Data(r io.Reader) error {
	start := time.Now()
	err := ss.data(r)
	m, l := ss.s.cfg.Metrics, ss.s.cfg.Mode.String()
	m.messages.WithLabelValues(l, replyLabel(err)).Inc()
	m.deliver.WithLabelValues(l, replyClass(err)).Observe(time.Since(start).Seconds())
	var se *smtp.SMTPError
	switch {
	case err == errTimeout:
		ss.closeSoon()
	case errors.As(err, &se) && se.Code != 250:
		ss.drain(r)
	}
	return err
}

// drain reads the rest of a refused message, so that none of it is taken
// for commands, renewing the data timeout per read. go-smtp drains too,
// but under a single deadline; if the rest cannot be read (timeout, line
// too long) the connection is closed after the reply.
func (ss *session) drain(r io.Reader) {
	c := ss.conn.Conn()
	buf := make([]byte, 32<<10)
	for {
		c.SetReadDeadline(time.Now().Add(ss.s.cfg.DataTimeout))
		_, err := r.Read(buf)
		switch {
		case err == nil:
			continue
		case err == io.EOF:
			return
		case errors.Is(err, smtp.ErrDataTooLarge):
			// go-smtp drains the rest itself, without the size limit.
			return
		}
		ss.closeSoon()
		return
	}
}

func (ss *session) data(r io.Reader) error {
	ss.mu.Lock()
	tx := ss.tx
	ss.mu.Unlock()
	if len(tx.rcpts) == 0 && len(tx.remote) == 0 { // go-smtp checks RCPT; this guards our own state
		return errTemporary
	}
	id := newID()
	log := ss.log.With("msg", id)
	// The first local recipient's backend; for remote recipients only, the
	// sender's (any backend can queue: storage is shared).
	var b *pool.Backend
	var err error
	switch {
	case len(tx.rcpts) > 0:
		b, err = ss.s.router.Route(tx.rcpts[0].AccountId, tx.routes[0])
	case ss.account != nil:
		b, err = ss.s.router.Route(ss.account.ID, ss.account.Backend)
	default:
		b, err = ss.s.router.Route(tx.remote[0], "")
	}
	if err != nil {
		log.Warn("deliver: no backend", "err", err)
		return errTemporary
	}
	log = log.With("backend", b.Name)
	// The stream lives while the client uploads (bounded by the data
	// timeout per read); after the upload the answer must come within the
	// backend timeout.
	ctx, cancel := context.WithCancel(ss.ctx)
	defer cancel()
	st, err := b.Client.Deliver(ctx)
	if err != nil {
		return ss.deliverFailed(log, b, err)
	}
	hdr := &mailboxv1.DeliverHeader{Recipients: tx.rcpts, TraceId: id, MailFrom: tx.from, RemoteRecipients: tx.remote}
	if ss.account != nil {
		hdr.SubmitterAccountId = ss.account.ID
		if ss.s.cfg.SenderCheck {
			// MAIL FROM is the user's own address: bounces go to the
			// user's INBOX without a round trip through the Internet.
			hdr.BounceAccountId = ss.account.ID
		}
	}
	if err := st.Send(&mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Header{Header: hdr}}); err != nil {
		return ss.deliverFailed(log, b, recvErr(st, err))
	}
	sc := scanner{maxLine: ss.s.cfg.MaxLineLength, inHeader: true, maxHops: ss.s.cfg.MaxHops}
	buf := make([]byte, 0, deliverChunk)
	buf = append(buf, ss.received(id, &tx)...)
	// Submitted mail gets the Date and Message-ID its client left out (RFC
	// 6409 8.2, 8.3; large receivers refuse mail without Message-ID): the
	// header is held back until it is complete, up to maxHeldHeader.
	completeHeader := ss.account != nil
	headerAt := len(buf)
	var size int64
	netConn := ss.conn.Conn()
	for {
		netConn.SetReadDeadline(time.Now().Add(ss.s.cfg.DataTimeout))
		n, rerr := r.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			chunk := buf[len(buf) : len(buf)+n]
			size += int64(n)
			if ss.s.cfg.MaxMessageSize > 0 && size > ss.s.cfg.MaxMessageSize {
				return ss.refuse(log, errTooBig)
			}
			if e := sc.scan(chunk); e != nil {
				return ss.refuse(log, e)
			}
			buf = buf[:len(buf)+n]
		}
		if completeHeader {
			switch {
			case !sc.inHeader || rerr != nil:
				buf = addMissingFields(buf, headerAt, ss.s.cfg.Hostname, id, time.Now())
				completeHeader = false
			case len(buf) == cap(buf) && cap(buf) < maxHeldHeader:
				nb := make([]byte, len(buf), min(2*cap(buf), maxHeldHeader))
				copy(nb, buf)
				buf = nb
				continue
			case len(buf) == cap(buf):
				completeHeader = false // a header this large is sent as it is
			}
		}
		if len(buf) == cap(buf) || (rerr != nil && len(buf) > 0) {
			if err := st.Send(&mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Chunk{Chunk: buf}}); err != nil {
				// The backend ended the stream early; drain the client
				// (go-smtp does) and report what the backend said.
				return ss.deliverFailed(log, b, recvErr(st, err))
			}
			buf = make([]byte, 0, deliverChunk)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return ss.readFailed(log, rerr)
		}
	}
	if e := sc.finish(); e != nil {
		return ss.refuse(log, e)
	}
	timer := time.AfterFunc(ss.s.cfg.BackendTimeout, cancel)
	defer timer.Stop()
	resp, err := st.CloseAndRecv()
	if err != nil {
		return ss.deliverFailed(log, b, err)
	}
	return ss.results(log, id, &tx, resp)
}

// maxHeldHeader bounds the header section held back to complete it.
const maxHeldHeader = 256 << 10

// deliverChunk is the size of the body chunks sent to Deliver: 32 KiB less
// room for the protobuf framing, so that a chunk's message fits the 32 KiB
// buffers of gRPC's pool on both sides. gRPC zeroes a pooled buffer on
// every use, and its pool (grpc 1.85: 256 B, 4, 16, 32 KiB, 1 MiB) has
// nothing between 32 KiB and 1 MiB: a chunk of almost 64 KiB was encoded
// into a zeroed 1 MiB buffer, a quarter of the frontend's CPU with 1 MiB
// mail.
const deliverChunk = 32<<10 - 64

// addMissingFields inserts a Date and a Message-ID field at offset at of
// msg (the start of the client's header section) when the header section
// has none.
func addMissingFields(msg []byte, at int, hostname, id string, now time.Time) []byte {
	hasDate, hasID := false, false
	for rest := msg[at:]; len(rest) > 0; {
		line := rest
		if i := bytes.Index(rest, []byte("\r\n")); i >= 0 {
			line, rest = rest[:i], rest[i+2:]
		} else {
			rest = nil
		}
		if len(line) == 0 {
			break // end of the header section
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		switch strings.ToLower(string(bytes.TrimRight(name, " \t"))) {
		case "date":
			hasDate = true
		case "message-id":
			hasID = true
		}
	}
	if hasDate && hasID {
		return msg
	}
	var add []byte
	if !hasDate {
		add = append(add, "Date: "+now.Format(time.RFC1123Z)+"\r\n"...)
	}
	if !hasID {
		add = append(add, "Message-ID: <"+strconv.FormatInt(now.UnixNano(), 36)+"."+id+"@"+hostname+">\r\n"...)
	}
	out := make([]byte, 0, len(msg)+len(add)+cap(msg)-len(msg))
	out = append(out, msg[:at]...)
	out = append(out, add...)
	return append(out, msg[at:]...)
}

// recvErr returns the status that ended a stream whose Send failed.
func recvErr(st interface{ RecvMsg(any) error }, sendErr error) error {
	if !errors.Is(sendErr, io.EOF) {
		return sendErr
	}
	err := st.RecvMsg(&mailboxv1.DeliverResponse{})
	if err == nil {
		// Cannot happen (the backend answers only after the whole
		// message); never take it for success.
		return errors.New("deliver stream ended before the message was sent")
	}
	return err
}

// refuse ends a message that failed a check; returning makes the caller
// cancel the Deliver stream, so nothing is stored.
func (ss *session) refuse(log *slog.Logger, e *smtp.SMTPError) error {
	log.Info("message refused", "code", e.Code, "reason", e.Message)
	return e
}

func (ss *session) readFailed(log *slog.Logger, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		if se == smtp.ErrDataTooLarge {
			return ss.refuse(log, errTooBig)
		}
		return se
	}
	if errors.Is(err, smtp.ErrTooLongLine) {
		return ss.refuse(log, errLineTooLong)
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		log.Info("client timed out during DATA")
		return errTimeout
	}
	log.Debug("reading message failed", "err", err)
	return errTemporary
}

func (ss *session) deliverFailed(log *slog.Logger, b *pool.Backend, err error) error {
	k := fault.Of(err)
	if k == fault.Temporary && ss.ctx.Err() == nil {
		if status.Code(err) == codes.Unavailable {
			ss.s.router.MarkDown(b)
		}
	}
	lvl := slog.LevelWarn
	if k == fault.Config {
		lvl = slog.LevelError
	}
	log.Log(context.Background(), lvl, "deliver failed", "kind", k, "err", err)
	return dataError(k)
}

// results turns the per-recipient statuses into the one DATA reply. If any
// recipient has the message, the reply is 250: answering 4xx would make the
// client send it again to those who have it.
func (ss *session) results(log *slog.Logger, id string, tx *transaction, resp *mailboxv1.DeliverResponse) error {
	ok := 0
	var worst *smtp.SMTPError
	for i, r := range resp.Results {
		if r.Status == mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK {
			ok++
			continue
		}
		var e *smtp.SMTPError
		switch r.Status {
		case mailboxv1.DeliveryStatus_DELIVERY_STATUS_OVER_QUOTA:
			e = errOverQuota
		case mailboxv1.DeliveryStatus_DELIVERY_STATUS_NO_MAILBOX:
			e = errNoMailbox
		case mailboxv1.DeliveryStatus_DELIVERY_STATUS_REJECTED:
			e = errRejected
		default:
			e = errTemporary
		}
		if worst == nil || e.Code/100 == 4 {
			worst = e
		}
		account := ""
		if i < len(tx.rcpts) {
			account = tx.rcpts[i].AccountId
		}
		log.Warn("recipient not delivered", "account", account, "status", r.Status.String(), "detail", r.Detail)
	}
	if ok == 0 && resp.QueueId == 0 {
		if worst == nil {
			worst = errTemporary
		}
		return worst
	}
	if len(tx.remote) > 0 && resp.QueueId == 0 {
		// Cannot happen (the backend queues or fails the whole call);
		// never acknowledge mail the queue does not have.
		log.Error("backend stored the message but did not queue it for remote recipients")
		return errTemporary
	}
	log.Info("delivered", "size", resp.Size, "recipients", len(resp.Results), "stored", ok, "queue_id", resp.QueueId, "remote", len(tx.remote))
	ss.s.cfg.Metrics.bytes.WithLabelValues(ss.s.cfg.Mode.String()).Observe(float64(resp.Size))
	// go-smtp writes the code and text of an *SMTPError as they are; a 250
	// here is how the reply carries the message id.
	return reply(250, smtp.EnhancedCode{2, 0, 0}, "Ok: stored as "+id)
}

// received builds the trace header (RFC 5321 4.4) with the TLS version and
// cipher (RFC 8314 4.3 suggests recording them).
func (ss *session) received(id string, tx *transaction) []byte {
	proto := "SMTP"
	if ss.conn.Hostname() != "" {
		proto = "ESMTP"
	}
	tlsInfo := ""
	if cs, ok := ss.conn.TLSConnectionState(); ok {
		proto += "S"
		tlsInfo = "\r\n\t(using " + tls.VersionName(cs.Version) + " with cipher " + tls.CipherSuiteName(cs.CipherSuite) + ")"
	}
	if ss.account != nil {
		proto += "A"
	}
	if tx.mailOpts.UTF8 {
		proto = "UTF8" + proto // RFC 6531 3.7.3
	}
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(sanitize(ss.helo))
	b.WriteString(" ([")
	if ss.ip.Is6() {
		b.WriteString("IPv6:") // RFC 5321 4.1.3 address literal
	}
	b.WriteString(ss.ip.String())
	b.WriteString("])\r\n\tby ")
	b.WriteString(ss.s.cfg.Hostname)
	b.WriteString(" (mailcluster) with ")
	b.WriteString(proto)
	b.WriteString(" id ")
	b.WriteString(id)
	b.WriteString(tlsInfo)
	if len(tx.rcptAddr) == 1 && len(tx.rcptAddr[0]) < 200 {
		b.WriteString("\r\n\tfor <")
		b.WriteString(sanitize(tx.rcptAddr[0]))
		b.WriteString(">")
	}
	b.WriteString(";\r\n\t")
	b.WriteString(time.Now().UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	b.WriteString("\r\n")
	return []byte(b.String())
}

// sanitize keeps a client-supplied string safe inside a header.
func sanitize(s string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || r == '(' || r == ')' || r == '\\' || r == ';' {
			return '_'
		}
		return r
	}, s)
}

// scanner checks a message as it streams: NUL bytes, CR or LF not part of
// CRLF (which would allow SMTP smuggling through servers that take them as
// line ends), header lines over 998 characters, and more Received fields
// than maxHops (a mail loop, RFC 5321 6.3; the one this server adds counts
// too). Text lines over the line limit are refused by go-smtp for DATA; the
// scanner refuses them in BDAT.
type scanner struct {
	maxLine   int
	maxHops   int
	lineLen   int
	pendingCR bool
	inHeader  bool
	hops      int
	// lineStart holds the first bytes of the current header line, to
	// recognise "Received:".
	lineStart [9]byte
}

func (s *scanner) scan(p []byte) *smtp.SMTPError {
	for len(p) > 0 {
		if s.pendingCR {
			s.pendingCR = false
			if p[0] != '\n' {
				return errBareNewline
			}
			// End of a line; an empty one ends the header.
			if s.inHeader && s.lineLen == 0 {
				s.inHeader = false
			}
			s.lineLen = 0
			p = p[1:]
			continue
		}
		// The text up to the next CR (searched with the vectorised
		// bytes.IndexByte: this runs over every byte of every message).
		seg := p
		cr := bytes.IndexByte(p, '\r')
		if cr >= 0 {
			seg = p[:cr]
		}
		if bytes.IndexByte(seg, '\n') >= 0 {
			return errBareNewline
		}
		if bytes.IndexByte(seg, 0) >= 0 {
			return errNUL
		}
		if s.inHeader && s.maxHops > 0 && s.lineLen < len(s.lineStart) {
			n := copy(s.lineStart[s.lineLen:], seg)
			if s.lineLen+n == len(s.lineStart) && strings.EqualFold(string(s.lineStart[:]), "received:") {
				s.hops++
				if s.hops >= s.maxHops {
					return errLoop
				}
			}
		}
		s.lineLen += len(seg)
		if s.inHeader && s.lineLen > 998 {
			return errHeaderLine
		}
		if s.lineLen > s.maxLine-2 {
			return errLineTooLong
		}
		if cr < 0 {
			return nil
		}
		s.pendingCR = true
		p = p[cr+1:]
	}
	return nil
}

func (s *scanner) finish() *smtp.SMTPError {
	if s.pendingCR {
		return errBareNewline
	}
	return nil
}
