package backend

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"mailcluster/backend/blob"
	"mailcluster/backend/dkim"
	"mailcluster/backend/dsn"
	"mailcluster/backend/outbound"
	"mailcluster/backend/store"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// The outbound queue's delivery side. Every backend with queue-workers > 0
// runs one dispatcher: it claims due recipients from PostgreSQL (leased, so
// that backends never send the same recipient at once and a dead backend's
// claims return to the queue when the lease ends), hands each (message,
// domain) group to a worker, and records the outcome.
//
// Delivery is at least once: a worker that dies (or stalls past its lease)
// after the remote server accepted a message but before the outcome is
// recorded leaves the recipients in the queue, and another worker sends
// them again. That is the only way a recipient can receive a message twice;
// at most once would lose mail instead.

// maxRcptsPerTransaction is the most recipients sent in one SMTP
// transaction.
const maxRcptsPerTransaction = 100

// maxOriginalHeader bounds the original header copied into a bounce.
const maxOriginalHeader = 64 << 10

// queueRunner delivers queued mail.
type queueRunner struct {
	svc       *service
	log       *slog.Logger
	transport *outbound.Transport
	wake      chan struct{}
}

func newQueueRunner(svc *service) (*queueRunner, error) {
	cfg := svc.cfg
	helo := svc.helo
	var relayTLS *tls.Config
	if cfg.OutboundRelayCA != "" {
		pem, err := os.ReadFile(cfg.OutboundRelayCA)
		if err != nil {
			return nil, fmt.Errorf("outbound-relay-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("outbound-relay-ca: no certificates in file")
		}
		host, _, _ := net.SplitHostPort(cfg.OutboundRelay)
		relayTLS = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	}
	t, err := outbound.New(outbound.Config{
		HeloName: helo, Resolver: cfg.OutboundDNS, Port: cfg.OutboundPort,
		ConnectTimeout: cfg.OutboundConnectTimeout, CommandTimeout: cfg.OutboundCommandTimeout, DataTimeout: cfg.OutboundDataTimeout,
		DomainConcurrency: cfg.OutboundDomainConcurrency,
		Relay:             cfg.OutboundRelay, RelayUsername: cfg.OutboundRelayUser, RelayPassword: cfg.OutboundRelayPass,
		RelayImplicitTLS: cfg.OutboundRelayImplicitTLS, RelayTLS: relayTLS,
		Log: svc.log.With("part", "outbound"),
	})
	if err != nil {
		return nil, fmt.Errorf("outbound: %w", err)
	}
	return &queueRunner{svc: svc, log: svc.log.With("part", "queue"), transport: t, wake: make(chan struct{}, 1)}, nil
}

// heloName is the host name outbound mail and bounces are sent as:
// outbound-helo, else the system's host name. A DSN must be able to name it.
func heloName(cfg Config) (string, error) {
	helo := cfg.OutboundHelo
	if helo == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return "", errors.New("outbound-helo: the system has no host name; set outbound-helo")
		}
		helo = h
	}
	if _, err := dsn.Build(dsn.Report{ReportingMTA: helo, From: "MAILER-DAEMON@" + helo, To: "postmaster@example.com",
		Recipients: []dsn.Recipient{{Address: "x@example.com", Action: dsn.ActionFailed, Status: "5.0.0"}}}, nil, 0); err != nil {
		return "", fmt.Errorf("outbound-helo: %q cannot name this host in bounces: %w", helo, err)
	}
	return helo, nil
}

// poke makes the dispatcher look for due mail now (after an enqueue).
func (q *queueRunner) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run dispatches until ctx ends, then waits for running deliveries. Claims
// not yet handed to a worker when it stops are released at once.
func (q *queueRunner) run(ctx context.Context) {
	defer q.transport.Close()
	workers := q.svc.cfg.QueueWorkers
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		// Wait for a free worker.
		select {
		case sem <- struct{}{}:
			<-sem
		case <-ctx.Done():
			return
		}
		free := workers - len(sem)
		claims, err := q.svc.store.ClaimDue(ctx, free*10, q.svc.cfg.QueueLease, newToken())
		if err != nil && ctx.Err() == nil {
			q.log.Warn("claiming queued mail", "err", err)
		}
		if len(claims) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
			case <-time.After(q.svc.cfg.QueuePoll):
			}
			continue
		}
		q.svc.metrics.queueClaims.Add(float64(len(claims)))
		for i := range claims {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				q.release(claims[i:])
				return
			}
			wg.Add(1)
			go func(c *store.Claim) {
				defer wg.Done()
				defer func() { <-sem }()
				q.attempt(ctx, c)
			}(&claims[i])
		}
	}
}

// release hands claims back to the queue (due now) without an attempt.
func (q *queueRunner) release(claims []store.Claim) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range claims {
		if err := q.svc.store.ReleaseClaim(ctx, &claims[i]); err != nil {
			q.log.Warn("releasing a claim; its lease will end", "queue_id", claims[i].Message.ID, "err", err)
		}
	}
}

func newToken() int64 {
	var b [8]byte
	rand.Read(b[:])
	t := int64(binary.BigEndian.Uint64(b[:]) >> 1)
	if t == 0 {
		t = 1
	}
	return t
}

// backoff is the delay after the attempts-th failed attempt:
// queue-retry-min doubling up to queue-retry-max.
func (q *queueRunner) backoff(attempts int) time.Duration {
	d := q.svc.cfg.QueueRetryMin
	for i := 1; i < attempts && d < q.svc.cfg.QueueRetryMax; i++ {
		d *= 2
	}
	return min(d, q.svc.cfg.QueueRetryMax)
}

// attempt delivers one claim and records the outcome. It works only while
// the claim's lease lasts: a claim that waited for a worker past half its
// lease goes back to the queue untried, the delivery is cut off at
// three-quarters of the lease, and the outcome must be recorded before the
// lease ends, so that another backend never sends the same recipients while
// this one still may. Times are compared on the database's clock (the one
// leases and expiry are kept in), advanced by this process's monotonic
// clock.
func (q *queueRunner) attempt(parent context.Context, c *store.Claim) {
	m := &c.Message
	log := q.log.With("queue_id", m.ID, "trace", m.TraceID, "domain", c.Domain)
	lease := q.svc.cfg.QueueLease
	if time.Now().After(c.Until.Add(-lease / 2)) {
		log.Warn("claim waited too long for a worker; returning it to the queue", "lease", lease)
		q.release([]store.Claim{*c})
		return
	}
	ctx, cancel := context.WithDeadline(parent, c.Until.Add(-lease/4))
	defer cancel()
	rcpts := make([]string, len(c.Recipients))
	attempts := map[string]int{}
	for i, r := range c.Recipients {
		rcpts[i] = r.Address
		attempts[r.Address] = r.Attempts
	}
	body := func() (io.ReadCloser, error) {
		rc, err := q.svc.blobs.Get(ctx, m.BlobKey, 0, -1)
		if err != nil {
			return nil, err
		}
		if len(m.Prepend) == 0 {
			return rc, nil
		}
		return readCloser{io.MultiReader(bytes.NewReader(m.Prepend), rc), rc}, nil
	}
	start := time.Now()
	// At most maxRcptsPerTransaction per transaction: RFC 5321 4.5.3.1.8
	// obliges servers to take 100, not more.
	var results []outbound.Result
	for len(rcpts) > 0 {
		n := min(len(rcpts), maxRcptsPerTransaction)
		results = append(results, q.transport.Send(ctx, c.Domain,
			outbound.Envelope{From: m.MailFrom, Recipients: rcpts[:n], Size: m.Size + int64(len(m.Prepend))}, body)...)
		rcpts = rcpts[n:]
	}
	q.svc.metrics.queueAttempt.Observe(time.Since(start).Seconds())
	// Whatever happened, the results are recorded while the lease holds,
	// also when shutting down: a recipient the remote server accepted must
	// not be sent again after a restart.
	post, cancelPost := context.WithDeadline(context.WithoutCancel(ctx), c.Until)
	defer cancelPost()
	stopping := parent.Err() != nil
	now := c.DBNow.Add(time.Since(c.Claimed)) // the database's clock
	expired := !now.Before(m.ExpiresAt) && !stopping
	var outcomes []store.Outcome
	var failed, delayed []dsn.Recipient
	for _, r := range results {
		desc := describe(r)
		switch {
		case r.Delivered:
			outcomes = append(outcomes, store.Outcome{Recipient: r.Recipient, Done: true})
			q.svc.metrics.queueResults.WithLabelValues("delivered").Inc()
			log.Info("delivered", "to", r.Recipient, "remote", r.RemoteMTA, "reply", desc)
		case r.Permanent || expired:
			st := r.Enhanced
			text := r.Message
			if !r.Permanent {
				st = "4.4.7"
				text = "delivery time expired; last error: " + desc
			}
			if st == "" {
				st = "5.0.0"
			}
			failed = append(failed, dsn.Recipient{Address: r.Recipient, Action: "failed", Status: st,
				RemoteMTA: r.RemoteMTA, Diagnostic: diagnostic(r, text), LastAttempt: time.Now()})
			outcomes = append(outcomes, store.Outcome{Recipient: r.Recipient, Done: true, Error: desc})
			q.svc.metrics.queueResults.WithLabelValues("bounced").Inc()
			log.Info("bounced", "to", r.Recipient, "remote", r.RemoteMTA, "reply", desc, "expired", expired && !r.Permanent)
		case stopping:
			// Cut off by the shutdown, not by the remote side: due again
			// at once, for another backend.
			outcomes = append(outcomes, store.Outcome{Recipient: r.Recipient, Next: now, Error: desc})
		default:
			next := now.Add(q.backoff(attempts[r.Recipient]))
			if next.After(m.ExpiresAt) {
				next = m.ExpiresAt // a last attempt when the lifetime ends
			}
			outcomes = append(outcomes, store.Outcome{Recipient: r.Recipient, Next: next, Error: desc})
			delayed = append(delayed, dsn.Recipient{Address: r.Recipient, Action: "delayed", Status: "4" + orDefault(r.Enhanced, "4.0.0")[1:],
				RemoteMTA: r.RemoteMTA, Diagnostic: diagnostic(r, r.Message), LastAttempt: time.Now(), WillRetryUntil: m.ExpiresAt})
			q.svc.metrics.queueResults.WithLabelValues("deferred").Inc()
			log.Info("deferred", "to", r.Recipient, "remote", r.RemoteMTA, "reply", desc, "next", next)
		}
	}
	// Bounces are stored before the outcome is recorded: a crash between
	// the two sends a bounce twice rather than never.
	if len(failed) > 0 {
		if err := q.svc.bounce(post, m, failed); err != nil {
			log.Warn("storing a bounce failed; the recipients stay queued", "err", err)
			for i := range outcomes {
				for _, f := range failed {
					if outcomes[i].Recipient == f.Address {
						outcomes[i] = store.Outcome{Recipient: f.Address, Next: now.Add(q.svc.cfg.QueueRetryMin), Error: "bounce not stored yet: " + outcomes[i].Error}
					}
				}
			}
		}
	}
	if len(delayed) > 0 && q.svc.cfg.QueueDelayWarning > 0 && !m.Warned && now.Sub(m.CreatedAt) >= q.svc.cfg.QueueDelayWarning {
		q.warnDelay(post, log, m, delayed)
	}
	// Recording is retried while the lease lasts: a lost record means the
	// recipients are sent again.
	for wait := 100 * time.Millisecond; ; wait *= 2 {
		finished, err := q.svc.store.RecordAttempt(post, c, outcomes)
		switch {
		case err == nil:
			if finished {
				log.Debug("queue entry finished")
			}
			return
		case errors.Is(err, store.ErrNoQueueEntry):
			log.Info("queue entry was deleted during delivery")
			return
		}
		if time.Now().Add(wait).After(c.Until) {
			log.Error("recording delivery results failed until the lease ended; the recipients will be attempted again", "err", err)
			return
		}
		log.Warn("recording delivery results failed; retrying", "err", err)
		time.Sleep(wait)
	}
}

// warnDelay sends the sender one delay warning for the whole message (the
// first worker to ask takes it), naming every recipient still waiting:
// this attempt's with their fresh errors, the others' with their last.
func (q *queueRunner) warnDelay(ctx context.Context, log *slog.Logger, m *store.QueuedMessage, delayed []dsn.Recipient) {
	waiting, ok, err := q.svc.store.TakeDelayWarning(ctx, m.ID)
	if err != nil || !ok {
		if err != nil {
			log.Warn("taking the delay warning", "err", err)
		}
		return
	}
	fresh := map[string]dsn.Recipient{}
	for _, d := range delayed {
		fresh[d.Address] = d
	}
	var rcpts []dsn.Recipient
	for _, w := range waiting {
		if d, ok := fresh[w.Address]; ok {
			rcpts = append(rcpts, d)
			continue
		}
		rcpts = append(rcpts, dsn.Recipient{Address: w.Address, Action: dsn.ActionDelayed, Status: "4.0.0",
			Diagnostic: orDefault(w.LastError, "not delivered yet"), WillRetryUntil: m.ExpiresAt})
	}
	if len(rcpts) == 0 {
		return
	}
	if err := q.svc.bounce(ctx, m, rcpts); err != nil {
		log.Warn("storing a delay warning failed; none is sent", "err", err)
	}
}

type readCloser struct {
	io.Reader
	io.Closer
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// describe is a result as one line for logs and `admin queue show`.
func describe(r outbound.Result) string {
	var b strings.Builder
	if r.Code != 0 {
		fmt.Fprintf(&b, "%d ", r.Code)
	}
	if r.Enhanced != "" {
		b.WriteString(r.Enhanced + " ")
	}
	b.WriteString(r.Message)
	if r.RemoteMTA != "" {
		b.WriteString(" (from " + r.RemoteMTA + ")")
	}
	return b.String()
}

// diagnostic is the DSN's Diagnostic-Code text: the remote reply when there
// was one, else our own description.
func diagnostic(r outbound.Result, text string) string {
	if r.Code != 0 {
		return strings.TrimSpace(fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, text))
	}
	return text
}

// bounce sends the sender of m a DSN for rcpts (failed or delayed): into
// the bounce account's INBOX when the sender is local, else queued to the
// sender's address with the null sender, which is never bounced. Mail from
// the null sender gets no DSN.
func (s *service) bounce(ctx context.Context, m *store.QueuedMessage, rcpts []dsn.Recipient) error {
	log := s.log.With("part", "queue")
	if m.MailFrom == "" {
		log.Info("no bounce for mail from the null sender", "queue_id", m.ID)
		return nil
	}
	// The original's header, read first so that Build fails only for what
	// retrying cannot mend.
	var orig []byte
	rc, err := s.blobs.Get(ctx, m.BlobKey, 0, maxOriginalHeader)
	if err == nil {
		orig, err = io.ReadAll(rc)
		rc.Close()
	}
	if errors.Is(err, blob.ErrNotFound) {
		log.Warn("the original of a bounce is gone; bouncing without its header", "queue_id", m.ID)
	} else if err != nil {
		return err
	}
	to := m.MailFrom
	msg, err := dsn.Build(dsn.Report{
		ReportingMTA: s.helo, From: "MAILER-DAEMON@" + s.helo, To: to,
		QueueID: queueRef(m), ArrivalDate: m.CreatedAt, Recipients: rcpts,
	}, bytes.NewReader(orig), maxOriginalHeader)
	if err != nil {
		// A sender address a DSN cannot be written to (or such a
		// recipient): retrying cannot help, so the bounce is dropped.
		log.Warn("bounce dropped: no DSN can be built", "queue_id", m.ID, "to", to, "err", err)
		return nil
	}
	sp := &spool{max: int64(len(msg)) + 1, memLimit: int64(len(msg)) + 1}
	defer sp.Close()
	if _, err := sp.Write(msg); err != nil {
		return err
	}
	staged, err := s.stage(ctx, sp, time.Time{})
	if err != nil {
		return err
	}
	if m.BounceAccount != "" {
		res, err := s.store.Deliver(ctx, staged, []store.Delivery{{Account: m.BounceAccount}})
		if err != nil {
			s.discardLost(staged, err)
			return err
		}
		if res[0].Status == mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK {
			s.metrics.deliveries.WithLabelValues(res[0].Status.String()).Inc()
			return nil
		}
		// The account is gone (or has no INBOX): nobody to tell.
		s.discard(staged)
		log.Warn("bounce dropped: the sender's account cannot take it", "queue_id", m.ID, "account", m.BounceAccount,
			"status", res[0].Status.String(), "detail", res[0].Detail)
		return nil
	}
	_, id, err := s.store.DeliverAndQueue(ctx, staged, nil, &store.QueueEntry{
		Recipients: []string{to}, Lifetime: s.cfg.QueueLifetime, TraceID: m.TraceID,
	})
	if err != nil {
		s.discardLost(staged, err)
		return err
	}
	log.Info("bounce queued", "queue_id", m.ID, "bounce_queue_id", id, "to", to)
	if s.queue != nil {
		s.queue.poke()
	}
	return nil
}

// queueRef names a message in a bounce: its queue id, or for a local
// delivery its trace id.
func queueRef(m *store.QueuedMessage) string {
	if m.ID != 0 {
		return fmt.Sprint(m.ID)
	}
	return m.TraceID
}

// dkimKeys caches the signing keys from PostgreSQL, refreshed every minute,
// so that signing costs no query per message.
type dkimKeys struct {
	st      *store.Store
	log     *slog.Logger
	mu      sync.Mutex
	keys    map[string]*dkim.Key // by domain: the newest key
	fetched time.Time
}

const dkimRefresh = time.Minute

// forDomain returns the signing key of domain, or nil.
func (d *dkimKeys) forDomain(ctx context.Context, domain string) *dkim.Key {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Since(d.fetched) > dkimRefresh {
		keys, err := d.st.DKIMKeys(ctx)
		if err != nil {
			d.log.Warn("loading DKIM keys; using the ones loaded before", "err", err)
		} else {
			m := map[string]*dkim.Key{}
			for _, k := range keys {
				if !k.Signing {
					continue
				}
				key, err := dkim.Parse(k.Domain, k.Selector, k.PrivatePEM)
				if err != nil {
					// Not an older key instead: its record may be gone.
					d.log.Error("unusable DKIM key; the domain's mail goes out unsigned", "domain", k.Domain, "selector", k.Selector, "err", err)
					continue
				}
				m[k.Domain] = key
			}
			d.keys = m
		}
		d.fetched = time.Now()
	}
	return d.keys[strings.ToLower(domain)]
}
