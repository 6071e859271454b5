// Package outbound delivers one message to the recipients of one destination
// domain over SMTP, the way an MTA's SMTP client does (RFC 5321 section 5,
// RFC 7505 null MX, RFC 3207 STARTTLS, RFC 3463 enhanced status codes).
//
// The backend's outbound queue decides what to send and when to retry; this
// package decides where to send it (the domain's MX hosts, or a smarthost)
// and reports, per recipient, what the remote server answered. It keeps
// nothing durable: a Send that returns has either handed the message to a
// server for a recipient (Result.Delivered) or reports why not.
//
// Connections are opportunistically encrypted with STARTTLS when the MX host
// offers it, without certificate verification (Postfix's "may" level); the
// smarthost, when configured, is always reached over verified TLS.
package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// Config configures a Transport. Zero durations and counts take the defaults
// documented on each field.
type Config struct {
	// HeloName is the name this host gives in EHLO/HELO (required). It
	// should be a fully-qualified domain name whose A/AAAA records point
	// back to this host, or receivers will distrust the mail.
	HeloName string

	// Resolver is the "host:port" of the DNS server asked for MX, A and
	// AAAA records (UDP, with TCP when the answer is truncated). "" uses
	// the servers in the system's resolv.conf.
	Resolver string
	// DNSTimeout bounds each DNS lookup, retries included; default 30s.
	DNSTimeout time.Duration

	// Port is the SMTP port of MX hosts; default 25. Tests set a loopback
	// port.
	Port int

	// ConnectTimeout bounds the TCP connect to one address; default 30s.
	ConnectTimeout time.Duration
	// CommandTimeout bounds the wait for each reply (the greeting, EHLO,
	// STARTTLS and the TLS handshake, MAIL, RCPT, DATA's 354, RSET);
	// default 5m (RFC 5321 section 4.5.3.2).
	CommandTimeout time.Duration
	// DataTimeout bounds the transfer of the message body and, separately,
	// the wait for the reply to its final dot; default 10m.
	DataTimeout time.Duration

	// DomainConcurrency is the most Sends (each using at most one
	// connection at a time) in progress at once for one destination
	// domain, or for the relay when Relay is set; default 20. Send waits
	// for a free slot. Connections idle for reuse are not in use; there
	// are at most DomainConcurrency of them per destination too.
	DomainConcurrency int
	// IdleTimeout is how long a connection is kept open after a
	// transaction, for reuse by the next Send to the same destination;
	// default 30s.
	IdleTimeout time.Duration
	// MaxReuse is the number of transactions on one connection after which
	// it is closed; default 100.
	MaxReuse int
	// MaxAddresses is the number of addresses (over all MX hosts) one Send
	// tries before giving up with a temporary failure; default 10.
	MaxAddresses int

	// Relay is a smarthost "host:port". When set, all mail goes there
	// instead of to the destination domain's MX hosts, over TLS: STARTTLS,
	// which must be offered, unless RelayImplicitTLS.
	Relay string
	// RelayUsername and RelayPassword, when RelayUsername is set,
	// authenticate to the relay with AUTH PLAIN (after TLS only).
	RelayUsername, RelayPassword string
	// RelayImplicitTLS connects to the relay with TLS from the start (the
	// port 465 style of RFC 8314) instead of STARTTLS.
	RelayImplicitTLS bool
	// RelayTLS verifies the relay's certificate: RootCAs (nil: the system
	// roots) and ServerName (empty: the host part of Relay). A nil RelayTLS
	// means both defaults. Certificate verification cannot be turned off.
	RelayTLS *tls.Config

	// Log receives one line per SMTP session and per failure; nil
	// discards.
	Log *slog.Logger
}

// Defaults, named for the fields they fill.
const (
	DefaultPort              = 25
	DefaultDNSTimeout        = 30 * time.Second
	DefaultConnectTimeout    = 30 * time.Second
	DefaultCommandTimeout    = 5 * time.Minute
	DefaultDataTimeout       = 10 * time.Minute
	DefaultDomainConcurrency = 20
	DefaultIdleTimeout       = 30 * time.Second
	DefaultMaxReuse          = 100
	DefaultMaxAddresses      = 10
)

// withDefaults returns c with the zero fields set to their defaults.
func (c Config) withDefaults() Config {
	setDur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setInt := func(n *int, def int) {
		if *n == 0 {
			*n = def
		}
	}
	setInt(&c.Port, DefaultPort)
	setDur(&c.DNSTimeout, DefaultDNSTimeout)
	setDur(&c.ConnectTimeout, DefaultConnectTimeout)
	setDur(&c.CommandTimeout, DefaultCommandTimeout)
	setDur(&c.DataTimeout, DefaultDataTimeout)
	setInt(&c.DomainConcurrency, DefaultDomainConcurrency)
	setDur(&c.IdleTimeout, DefaultIdleTimeout)
	setInt(&c.MaxReuse, DefaultMaxReuse)
	setInt(&c.MaxAddresses, DefaultMaxAddresses)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first problem with c, after defaults are applied.
func (c Config) Validate() error {
	if c.HeloName == "" {
		return errors.New("outbound: HeloName is required")
	}
	if strings.ContainsFunc(c.HeloName, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return fmt.Errorf("outbound: HeloName %q must be printable ASCII without spaces", c.HeloName)
	}
	if c.Resolver != "" {
		if _, _, err := net.SplitHostPort(c.Resolver); err != nil {
			return fmt.Errorf("outbound: Resolver %q: %v", c.Resolver, err)
		}
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("outbound: Port %d out of range", c.Port)
	}
	for name, d := range map[string]time.Duration{
		"DNSTimeout": c.DNSTimeout, "ConnectTimeout": c.ConnectTimeout,
		"CommandTimeout": c.CommandTimeout, "DataTimeout": c.DataTimeout,
		"IdleTimeout": c.IdleTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("outbound: %s must not be negative", name)
		}
	}
	for name, n := range map[string]int{
		"DomainConcurrency": c.DomainConcurrency, "MaxReuse": c.MaxReuse, "MaxAddresses": c.MaxAddresses,
	} {
		if n < 0 {
			return fmt.Errorf("outbound: %s must not be negative", name)
		}
	}
	if c.Relay != "" {
		host, port, err := net.SplitHostPort(c.Relay)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("outbound: Relay %q must be host:port", c.Relay)
		}
	} else if c.RelayUsername != "" || c.RelayImplicitTLS || c.RelayTLS != nil {
		return errors.New("outbound: relay settings given without Relay")
	}
	if c.RelayTLS != nil && c.RelayTLS.InsecureSkipVerify {
		return errors.New("outbound: RelayTLS must verify the relay's certificate")
	}
	return nil
}

// Envelope is the SMTP envelope of one message for one destination domain.
type Envelope struct {
	// From is the reverse path; "" is the null sender (for bounces).
	From string
	// Recipients are the forward paths, all in the destination domain
	// given to Send. An address whose domain is in U-labels is sent with
	// the domain in A-labels; an address with a non-ASCII local part needs
	// a server offering SMTPUTF8 (RFC 6531).
	Recipients []string
	// Size is the message size in bytes, sent as MAIL FROM's SIZE
	// parameter (RFC 1870) when the server offers SIZE; 0 if unknown.
	Size int64
}

// Result is the outcome for one recipient.
type Result struct {
	Recipient string
	// Code is the server's SMTP reply code, or 0 when no server answered
	// for this recipient (DNS, connection or TLS failure, cancellation).
	Code int
	// Enhanced is the RFC 3463 status code ("5.1.1"); when the server gave
	// none it is synthesised: "4.4.1" no answer from any host, "4.4.2"
	// connection lost or timed out, "4.4.3" DNS failure, "5.1.2" domain
	// not found, "5.1.10" null MX, "5.4.4" no MX host has an address,
	// "5.6.7" SMTPUTF8 needed but not offered, "4.7.5"/"4.7.10" the relay's
	// TLS failed or is missing, "4.3.0" local trouble or cancellation,
	// "X.0.0" for a server reply without one.
	Enhanced string
	// Message is the server's reply text (without code), or our
	// description: one line of printable ASCII, at most 500 bytes.
	Message string
	// RemoteMTA is the name of the host that answered ("" if none): the MX
	// host name, or the relay's host.
	RemoteMTA string
	// Permanent means do not retry: a 5xx reply to MAIL, RCPT or the
	// message, null MX, a domain that does not exist. A 5xx greeting or
	// EHLO reply is temporary (another host, or later, may serve us).
	Permanent bool
	// Delivered means the server accepted the message for this recipient
	// (2xx after the message's final dot).
	Delivered bool
}

// Transport delivers messages over SMTP. It is safe for concurrent use and
// keeps idle connections for reuse until Close.
type Transport struct {
	cfg      Config
	log      *slog.Logger
	resolver *net.Resolver
	dialer   *net.Dialer
	relayTLS *tls.Config // nil without Relay

	mu     sync.Mutex
	closed bool
	dests  map[string]*destination // by pool key: domain, or relayKey
}

// relayKey is the pool key of the relay: all destination domains share its
// connections and its concurrency limit.
const relayKey = "[relay]"

// New validates cfg after applying its defaults and returns a Transport.
func New(cfg Config) (*Transport, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Transport{
		cfg:   cfg,
		log:   cfg.Log,
		dests: make(map[string]*destination),
	}
	t.resolver = &net.Resolver{PreferGo: true}
	if cfg.Resolver != "" {
		server := cfg.Resolver
		t.resolver.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}
	}
	t.dialer = &net.Dialer{Timeout: cfg.ConnectTimeout, Resolver: t.resolver}
	if cfg.Relay != "" {
		host, _, _ := net.SplitHostPort(cfg.Relay)
		if cfg.RelayTLS != nil {
			t.relayTLS = cfg.RelayTLS.Clone()
		} else {
			t.relayTLS = &tls.Config{}
		}
		if t.relayTLS.ServerName == "" {
			t.relayTLS.ServerName = host
		}
	}
	return t, nil
}

// Send delivers one message to the recipients of one domain and returns one
// Result per recipient, in the order of env.Recipients, always. domain is
// the destination (lower-case ASCII or U-labels, or an address literal like
// "[192.0.2.1]"); it picks the MX hosts unless Config.Relay is set.
//
// body is called each time the message must be sent from its start (after
// falling back to another host); the reader yields the complete message with
// CRLF line endings, and Send closes it. A body error fails the accepted
// recipients temporarily (4.3.0) without sending a truncated message.
//
// Send tries the hosts in MX preference order and stops at the first one
// that takes responsibility for the transaction; it moves on to the next
// address only while no recipient can have been delivered (RFC 5321 section
// 5.1), so it never sends the message twice. Recipients refused with 4xx at
// RCPT are not tried elsewhere in the same Send. Cancelling ctx aborts the
// exchange and fails the unfinished recipients temporarily; Send waits for
// a concurrency slot for the destination (Config.DomainConcurrency).
func (t *Transport) Send(ctx context.Context, domain string, env Envelope, body func() (io.ReadCloser, error)) []Result {
	d := t.newDelivery(ctx, domain, env, body)
	if d.pending() == 0 {
		return d.res
	}
	dest, err := t.acquire(ctx, d.key)
	if err != nil {
		if errors.Is(err, errClosed) {
			d.finish(outcome{enhanced: "4.3.0", message: "outbound transport closed"})
		} else {
			d.finish(d.canceled())
		}
		return d.res
	}
	defer t.releaseSlot(d.key, dest)
	d.run()
	return d.res
}

// Close closes the idle connections (with QUIT) and makes later Sends fail
// temporarily. Sends in progress finish; their connections are then closed.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	var idle []*session
	for key, d := range t.dests {
		for _, s := range d.idle {
			s.timer.Stop()
			idle = append(idle, s)
		}
		d.idle = nil
		if d.refs == 0 {
			delete(t.dests, key)
		}
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range idle {
		wg.Go(func() { t.quit(s) })
	}
	wg.Wait()
	return nil
}
