package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// pool holds connections to the first reachable of several LDAP servers.
// Connections are bound as bindDN when it is set (lookups, admin); the
// authentication pool leaves them unbound, as every use binds as a user.
type pool struct {
	cfg            *Config
	log            *slog.Logger
	tls            *tls.Config
	bindDN, bindPW string
	now            func() time.Time

	sem    chan struct{} // one token per connection in use
	mu     sync.Mutex
	idle   []*pconn
	down   map[string]time.Time // URL → skipped until
	closed bool
}

type pconn struct {
	*ldap.Conn
	url   string
	born  time.Time
	fresh bool // dialed for this use, not taken from the idle list
}

func newPool(cfg *Config, log *slog.Logger, bindDN, bindPW string, now func() time.Time) (*pool, error) {
	p := &pool{cfg: cfg, log: log, bindDN: bindDN, bindPW: bindPW, now: now,
		sem: make(chan struct{}, cfg.PoolSize), down: map[string]time.Time{}}
	p.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLSServerName}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ldap-ca-file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ldap-ca-file: no PEM certificate in %s", cfg.CAFile)
		}
		p.tls.RootCAs = roots
	}
	return p, nil
}

// do runs fn on a pooled connection. A network failure is retried once on a
// fresh connection (possibly to the next server). Errors that mean the
// directory is unavailable wrap ErrTemporary.
func (p *pool) do(ctx context.Context, fn func(c *ldap.Conn) error) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var c *pconn
		c, err = p.get(ctx)
		if err != nil {
			return err
		}
		c.SetTimeout(p.opTimeout(ctx))
		err = fn(c.Conn)
		fresh := c.fresh
		p.put(c, err)
		if !isNetwork(err) {
			break
		}
		if fresh {
			// A new connection failed (e.g. the server accepts but does
			// not answer): the server is at fault, not a stale connection.
			p.markDown(c.url, err)
		}
		p.log.Debug("ldap: connection failed, retrying", "url", c.url, "err", err)
	}
	return classify(err)
}

func (p *pool) opTimeout(ctx context.Context) time.Duration {
	t := p.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < t {
			t = max(left, time.Millisecond)
		}
	}
	return t
}

// get returns an idle connection or dials a new one, waiting for a free slot.
func (p *pool) get(ctx context.Context) (*pconn, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrTemporary, ctx.Err())
	}
	now := p.now()
	p.mu.Lock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if c.IsClosing() || now.Sub(c.born) > p.cfg.ConnMaxAge {
			c.Close()
			continue
		}
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := p.dial(ctx)
	if err != nil {
		<-p.sem
		return nil, err
	}
	return c, nil
}

// put returns a connection to the pool, or closes it after a network error.
func (p *pool) put(c *pconn, err error) {
	defer func() { <-p.sem }()
	if isNetwork(err) || c.IsClosing() {
		c.Close()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return
	}
	c.fresh = false
	p.idle = append(p.idle, c)
}

// dial connects to the first server that is not marked down, then to those
// that are, binds, and marks servers that fail down for DownFor. When every
// server is marked down it fails at once.
func (p *pool) dial(ctx context.Context) (*pconn, error) {
	now := p.now()
	p.mu.Lock()
	var up, down []string
	for _, u := range p.cfg.URLs {
		if now.Before(p.down[u]) {
			down = append(down, u)
		} else {
			up = append(up, u)
		}
	}
	p.mu.Unlock()
	if len(up) == 0 {
		// Every server failed within DownFor: fail at once rather than
		// make each request wait for dial timeouts; the first mark to
		// expire lets the next request try again.
		return nil, fmt.Errorf("%w: every LDAP server failed within the last %s", ErrTemporary, p.cfg.DownFor)
	}
	var errs []error
	for _, u := range append(up, down...) {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		c, err := p.dialOne(ctx, u)
		if err == nil {
			p.mu.Lock()
			delete(p.down, u)
			p.mu.Unlock()
			return &pconn{Conn: c, url: u, born: now, fresh: true}, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
		p.markDown(u, err)
	}
	return nil, fmt.Errorf("%w: no LDAP server reachable: %v", ErrTemporary, errors.Join(errs...))
}

// markDown makes dial skip a server for DownFor.
func (p *pool) markDown(url string, err error) {
	p.log.Warn("ldap: server unavailable", "url", url, "err", err, "skipped_for", p.cfg.DownFor)
	p.mu.Lock()
	p.down[url] = p.now().Add(p.cfg.DownFor)
	p.mu.Unlock()
}

func (p *pool) dialOne(ctx context.Context, rawURL string) (*ldap.Conn, error) {
	timeout := p.cfg.DialTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	tc := p.tls.Clone()
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if tc.ServerName == "" {
		tc.ServerName = u.Hostname()
	}
	c, err := ldap.DialURL(rawURL, ldap.DialWithDialer(&net.Dialer{Timeout: timeout}), ldap.DialWithTLSConfig(tc))
	if err != nil {
		return nil, err
	}
	c.SetTimeout(p.cfg.Timeout)
	if p.cfg.StartTLS && u.Scheme == "ldap" {
		if err := c.StartTLS(tc); err != nil {
			c.Close()
			return nil, fmt.Errorf("starttls: %w", err)
		}
	}
	if p.bindDN != "" {
		if err := c.Bind(p.bindDN, p.bindPW); err != nil {
			c.Close()
			return nil, fmt.Errorf("bind as %s: %w", p.bindDN, err)
		}
	}
	return c, nil
}

// close closes the idle connections; connections in use are closed when
// they are returned.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.idle {
		c.Close()
	}
	p.idle = nil
}

// isNetwork reports whether err means the connection is unusable.
func isNetwork(err error) bool {
	return err != nil && ldap.IsErrorAnyOf(err, ldap.ErrorNetwork, ldap.LDAPResultServerDown,
		ldap.LDAPResultConnectError, ldap.LDAPResultTimeout, ldap.LDAPResultUnavailable, ldap.LDAPResultBusy)
}

// classify wraps errors that mean "try again later" in ErrTemporary.
func classify(err error) error {
	if err == nil || errors.Is(err, ErrTemporary) {
		return err
	}
	if isNetwork(err) || ldap.IsErrorAnyOf(err, ldap.LDAPResultTimeLimitExceeded, ldap.LDAPResultAdminLimitExceeded,
		ldap.LDAPResultUnwillingToPerform, ldap.LDAPResultOther, ldap.LDAPResultLoopDetect) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %v", ErrTemporary, err)
	}
	return err
}
