package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// delivery is the state of one Send.
type delivery struct {
	t      *Transport
	ctx    context.Context
	log    *slog.Logger
	key    string // pool key: the domain, or relayKey
	domain string // in A-labels
	from   string // as sent in MAIL FROM
	size   int64
	body   func() (io.ReadCloser, error)

	fromUTF8 bool
	rcpts    []rcptState
	res      []Result

	last *outcome // the failure to report for unfinished recipients if no host takes the message
}

type rcptState struct {
	addr string // as sent in RCPT TO
	utf8 bool   // needs SMTPUTF8
	done bool   // res has its final Result for this Send
}

// newDelivery checks the domain and addresses; invalid ones get their final
// (permanent) Results here.
func (t *Transport) newDelivery(ctx context.Context, domain string, env Envelope, body func() (io.ReadCloser, error)) *delivery {
	d := &delivery{
		t:     t,
		ctx:   ctx,
		log:   t.log,
		size:  env.Size,
		body:  body,
		rcpts: make([]rcptState, len(env.Recipients)),
		res:   make([]Result, len(env.Recipients)),
	}
	for i, r := range env.Recipients {
		d.res[i].Recipient = r
	}
	ascii, err := asciiDomain(domain)
	if err != nil {
		d.finish(outcome{enhanced: "5.1.2", message: "bad destination domain: " + err.Error(), permanent: true})
		return d
	}
	d.domain, d.key = ascii, ascii
	if t.cfg.Relay != "" {
		d.key = relayKey
	}
	d.log = t.log.With("domain", d.domain)
	from, err := normalizeAddress(env.From)
	if err != nil {
		d.finish(outcome{enhanced: "5.1.7", message: "bad sender address: " + err.Error(), permanent: true})
		return d
	}
	d.from, d.fromUTF8 = from, !isASCII(from)
	for i, r := range env.Recipients {
		addr, err := normalizeAddress(r)
		if err == nil && addr == "" {
			err = errors.New("empty address")
		}
		if err != nil {
			d.set(i, outcome{enhanced: "5.1.3", message: "bad recipient address: " + err.Error(), permanent: true})
			continue
		}
		d.rcpts[i] = rcptState{addr: addr, utf8: !isASCII(addr)}
	}
	return d
}

// normalizeAddress returns addr with its domain in A-labels, so that only a
// non-ASCII local part needs SMTPUTF8. It refuses what cannot be put in a
// MAIL or RCPT command.
func normalizeAddress(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	if strings.ContainsFunc(addr, func(r rune) bool { return r < ' ' || r == 0x7f || r == '<' || r == '>' }) {
		return "", fmt.Errorf("%q: control character or angle bracket", addr)
	}
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", fmt.Errorf("%q: not local@domain", addr)
	}
	if isASCII(addr[i+1:]) {
		return addr, nil
	}
	domain, err := asciiDomain(addr[i+1:])
	if err != nil {
		return "", err
	}
	return addr[:i+1] + domain, nil
}

func (d *delivery) set(i int, o outcome) {
	d.res[i] = o.result(d.res[i].Recipient)
	d.rcpts[i].done = true
}

// finish gives o to every unfinished recipient.
func (d *delivery) finish(o outcome) {
	for i := range d.res {
		if !d.rcpts[i].done {
			d.set(i, o)
		}
	}
}

func (d *delivery) pending() int {
	n := 0
	for _, r := range d.rcpts {
		if !r.done {
			n++
		}
	}
	return n
}

// remember keeps o as the failure to report if no host takes the message:
// the last one, but a server's reply wins over a failure where none came.
func (d *delivery) remember(o outcome) {
	if d.last == nil || o.code != 0 || d.last.code == 0 {
		d.last = &o
	}
}

func (d *delivery) canceled() outcome { return canceledOutcome(d.ctx) }

func canceledOutcome(ctx context.Context) outcome {
	return outcome{enhanced: "4.3.0", message: "delivery attempt aborted: " + context.Cause(ctx).Error()}
}

// run tries the hosts of the destination until one takes responsibility
// for the transaction or none is left.
func (d *delivery) run() {
	// A connection kept from an earlier Send to a best-preference host
	// saves the DNS lookups and the connection setup.
	if s := d.t.takeIdle(d.ctx, d.key, func(s *session) bool { return s.host.best }); s != nil {
		if !d.attempt(s) {
			return
		}
	}
	hosts, o := d.t.route(d.ctx, d.domain)
	if o != nil {
		d.finish(*o)
		return
	}
	var noAddress, dnsTrouble *outcome
	tried := 0
hosts:
	for _, h := range hosts {
		addrs, o := d.t.addresses(d.ctx, h)
		if o != nil {
			d.log.Info("host skipped", "host", h.name, "reason", o.message)
			if o.permanent {
				noAddress = o
			} else {
				dnsTrouble = o
			}
			continue
		}
		for _, addr := range addrs {
			if d.ctx.Err() != nil {
				d.finish(d.canceled())
				return
			}
			if tried == d.t.cfg.MaxAddresses {
				d.log.Info("address limit reached", "limit", tried)
				break hosts
			}
			tried++
			s := d.t.takeIdle(d.ctx, d.key, func(s *session) bool { return s.addr == addr })
			if s == nil {
				var err error
				if s, err = d.connect(h, addr); err != nil {
					d.remember(d.failure(h, addr, err))
					continue
				}
			}
			if !d.attempt(s) {
				return
			}
		}
	}
	switch {
	case d.ctx.Err() != nil:
		d.finish(d.canceled())
	case d.last != nil:
		d.finish(*d.last)
	case dnsTrouble != nil:
		d.finish(*dnsTrouble)
	case noAddress != nil:
		d.finish(*noAddress)
	default:
		d.finish(outcome{enhanced: "4.4.1", message: "no address to try for " + d.domain})
	}
}

// connect opens a session to addr of h. A failed TLS handshake with an MX
// host is retried once on a new connection without STARTTLS.
func (d *delivery) connect(h host, addr string) (*session, error) {
	s, err := d.t.open(d.ctx, h, addr, false)
	var se *stageError
	if err != nil && !h.relay && errors.As(err, &se) && se.stage == stageTLS && d.ctx.Err() == nil {
		d.log.Info("TLS handshake failed, retrying without STARTTLS", "host", h.name, "addr", addr, "err", err)
		s, err = d.t.open(d.ctx, h, addr, true)
	}
	if err != nil {
		return nil, err
	}
	d.log.Debug("connected", "host", h.name, "addr", addr, "tls", s.tls)
	return s, nil
}

// failure describes err, from a session with addr of h.
func (d *delivery) failure(h host, addr string, err error) outcome {
	if d.ctx.Err() != nil {
		d.log.Info("session aborted", "host", h.name, "addr", addr, "err", err, "cause", context.Cause(d.ctx))
		return d.canceled()
	}
	stage, cause := "session", err
	var se *stageError
	if errors.As(err, &se) {
		stage, cause = se.stage, se.err
	}
	where := h.name + "[" + addr + "]"
	var reply *smtp.SMTPError
	if errors.As(err, &reply) {
		o := replyOutcome(reply, h.name)
		if stage == stageGreeting || stage == stageStartTLS || stage == stageAuth {
			// A host that will not talk to us now; another host, or
			// a later attempt, may (Postfix's smtp_skip_5xx_greeting).
			// A relay refusing our credentials is a configuration
			// mistake to fix, not a reason to bounce every message
			// (Postfix's smtp_sasl_auth_soft_bounce).
			o.permanent = false
			o.enhanced = "4" + o.enhanced[1:]
		}
		d.log.Info("negative reply", "host", h.name, "addr", addr, "stage", stage, "code", reply.Code, "reply", sanitize(reply.Message))
		return o
	}
	d.log.Info("session failed", "host", h.name, "addr", addr, "stage", stage, "err", err)
	var netErr net.Error
	switch {
	case errors.Is(err, errNoStartTLS):
		return outcome{enhanced: "4.7.10", message: where + " does not offer STARTTLS, required for the relay", remote: h.name}
	case errors.Is(err, errNoAuth):
		return outcome{enhanced: "4.7.0", message: where + " does not offer AUTH PLAIN", remote: h.name}
	case stage == stageTLS && h.relay:
		return outcome{enhanced: "4.7.5", message: "TLS with " + where + " failed: " + err.Error(), remote: h.name}
	case stage == stageConnect:
		return outcome{enhanced: "4.4.1", message: "connect to " + where + ": " + cause.Error()}
	case stage == stageGreeting:
		return outcome{enhanced: "4.4.1", message: "no greeting or EHLO reply from " + where + ": " + cause.Error()}
	case errors.As(err, &netErr) && netErr.Timeout():
		return outcome{enhanced: "4.4.2", message: "timeout in " + stage + " with " + where, remote: h.name}
	default:
		return outcome{enhanced: "4.4.2", message: "connection with " + where + " lost in " + stage + ": " + cause.Error(), remote: h.name}
	}
}

// attempt runs one mail transaction on s for the unfinished recipients,
// then keeps s for reuse or closes it. It reports whether the remaining
// recipients may be tried at another address: only when nothing can have
// been delivered and the failure is not the server's verdict on the
// message (RFC 5321 section 5.1: 4xx to MAIL, connection lost before the
// final dot).
func (d *delivery) attempt(s *session) (next bool) {
	c, h := s.client, s.host
	fail := func(stage string, err error) outcome {
		return d.failure(h, s.addr, &stageError{stage, err})
	}
	utf8OK, _ := c.Extension("SMTPUTF8")
	noUTF8 := outcome{
		enhanced:  "5.6.7",
		message:   h.name + " does not offer SMTPUTF8, needed for a non-ASCII address",
		remote:    h.name,
		permanent: true,
	}
	if d.fromUTF8 && !utf8OK {
		d.finish(noUTF8)
		d.t.put(d.key, s)
		return false
	}
	needUTF8 := d.fromUTF8
	var txn []int
	for i, r := range d.rcpts {
		switch {
		case r.done:
		case r.utf8 && !utf8OK:
			d.set(i, noUTF8)
		default:
			needUTF8 = needUTF8 || r.utf8
			txn = append(txn, i)
		}
	}
	if len(txn) == 0 {
		d.t.put(d.key, s)
		return false
	}

	s.uses++
	if err := c.Mail(d.from, &smtp.MailOptions{Size: d.size, UTF8: needUTF8}); err != nil {
		o := fail(stageMail, err)
		if isReply(err) && o.permanent {
			d.finish(o)
			d.keep(s, o)
			return false
		}
		d.remember(o)
		d.drop(s, err)
		return true
	}
	var accepted []int
	for _, i := range txn {
		err := c.Rcpt(d.rcpts[i].addr, nil)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		o := fail(stageRcpt, err)
		if !isReply(err) {
			// Accepted and unanswered recipients may go elsewhere.
			d.remember(o)
			d.drop(s, err)
			return true
		}
		d.set(i, o)
	}
	if len(accepted) == 0 {
		d.reset(s)
		return false
	}
	setAccepted := func(o outcome) {
		for _, i := range accepted {
			d.set(i, o)
		}
	}

	rc, err := d.body()
	if err != nil {
		d.log.Error("message body unavailable", "err", err)
		setAccepted(outcome{enhanced: "4.3.0", message: "local error reading the message"})
		d.reset(s)
		return false
	}
	defer rc.Close()
	w, err := c.Data()
	if err != nil {
		o := fail(stageData, err)
		if isReply(err) {
			setAccepted(o)
			d.keep(s, o)
			return false
		}
		d.remember(o)
		d.drop(s, err)
		return true
	}
	// go-smtp sets no deadline while the body is written.
	s.conn.SetDeadline(time.Now().Add(d.t.cfg.DataTimeout))
	src := &trackedReader{r: rc}
	if _, err := io.Copy(w, src); err != nil {
		// Without the final dot the server discards the message.
		s.close()
		if src.err != nil {
			d.log.Error("reading message body", "err", src.err)
			setAccepted(outcome{enhanced: "4.3.0", message: "local error reading the message"})
			return false
		}
		d.remember(fail(stageBody, err))
		return true
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		o := fail(stageDot, err)
		if !isReply(err) {
			// The server may have accepted the message: never send it
			// again in this Send.
			o.message += " (the message may have been delivered)"
			setAccepted(o)
			s.close()
			return false
		}
		setAccepted(o)
		d.keep(s, o)
		return false
	}
	o := successOutcome(resp.StatusText, h.name)
	setAccepted(o)
	d.log.Info("delivered", "host", h.name, "addr", s.addr, "tls", s.tls, "recipients", len(accepted), "reply", sanitize(resp.StatusText))
	d.t.put(d.key, s)
	return false
}

// keep puts s back for reuse after a negative reply o, unless the server
// closes the connection with it (421, RFC 5321 section 3.8) or the reply
// was not one the command allows (the exchange is out of step).
func (d *delivery) keep(s *session, o outcome) {
	if o.code == 421 || o.code/100 != 4 && o.code/100 != 5 {
		s.close()
		return
	}
	d.t.put(d.key, s)
}

// reset ends the transaction on s with RSET and keeps s for reuse.
func (d *delivery) reset(s *session) {
	if err := s.client.Reset(); err != nil {
		d.drop(s, &stageError{stageRset, err})
		return
	}
	d.t.put(d.key, s)
}

// drop closes s after err: politely after a negative reply, at once after a
// network error.
func (d *delivery) drop(s *session, err error) {
	if isReply(err) {
		d.t.quit(s)
		return
	}
	s.close()
}

func isReply(err error) bool {
	var reply *smtp.SMTPError
	return errors.As(err, &reply)
}

// trackedReader remembers a read error, to tell it from a write error in
// io.Copy.
type trackedReader struct {
	r   io.Reader
	err error
}

func (r *trackedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}
