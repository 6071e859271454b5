// Package frontend is the stateless protocol tier: it serves SMTP (and,
// later, IMAP and POP3) to clients, asks the LDAP directory who a user is,
// and calls the backends over gRPC. It keeps no mail (DESIGN.md rule 7).
//
// The shared parts live in small packages: listener (PROXY protocol and
// connection limits), cert (a TLS certificate reloaded on SIGHUP), pool (one
// health-checked gRPC connection per backend and routing of accounts to
// backends) and fault (classification of backend and directory errors, which
// each protocol maps to its replies with one table). smtpserver is the SMTP
// service.
package frontend

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"mailcluster/directory"
	"mailcluster/frontend/imap"
	"mailcluster/frontend/listener"
	"mailcluster/frontend/pool"
	"mailcluster/frontend/pop3"
)

// Listener names, as used by proxy-protocol.
const (
	ListenerSMTP        = "smtp"
	ListenerSubmission  = "submission"
	ListenerSubmissions = "submissions"
	ListenerIMAP        = "imap"
	ListenerIMAPS       = "imaps"
	ListenerPOP3        = "pop3"
	ListenerPOP3S       = "pop3s"
)

var listenerNames = []string{ListenerSMTP, ListenerSubmission, ListenerSubmissions, ListenerIMAP, ListenerIMAPS, ListenerPOP3, ListenerPOP3S}

// Config is the frontend's configuration. Defaults come from DefaultConfig;
// every field is documented in the README and settable by flag or
// MAILCLUSTER_* environment variable.
type Config struct {
	Hostname string `name:"hostname" help:"this service's public host name, used in greetings and Received headers"`

	SMTPListen        string `name:"smtp-listen" help:"address for inbound SMTP (port 25; empty disables)"`
	SubmissionListen  string `name:"submission-listen" help:"address for message submission with STARTTLS (port 587; empty disables)"`
	SubmissionsListen string `name:"submissions-listen" help:"address for message submission over implicit TLS (port 465; empty disables)"`
	IMAPListen        string `name:"imap-listen" help:"address for IMAP with STARTTLS (port 143; empty disables)"`
	IMAPSListen       string `name:"imaps-listen" help:"address for IMAP over implicit TLS (port 993; empty disables)"`
	POP3Listen        string `name:"pop3-listen" help:"address for POP3 with STLS (port 110; empty disables)"`
	POP3SListen       string `name:"pop3s-listen" help:"address for POP3 over implicit TLS (port 995; empty disables)"`

	TLSCert string `name:"tls-cert" help:"certificate chain file (PEM) for STARTTLS and implicit TLS; reloaded on SIGHUP"`
	TLSKey  string `name:"tls-key" help:"private key file (PEM) for tls-cert; reloaded on SIGHUP"`

	ProxyProtocol []string `name:"proxy-protocol" help:"listeners that accept a HAProxy PROXY protocol v1/v2 header: smtp, submission, submissions, imap, imaps, pop3, pop3s (comma-separated; empty: none)"`
	ProxyNetworks []string `name:"proxy-networks" help:"networks (CIDR) of the load balancers allowed to send PROXY headers; other peers are served as direct clients"`

	HTTPListen string `name:"http-listen" help:"address for /metrics (Prometheus), /healthz and /readyz; empty: off"`
	HTTPPprof  bool   `name:"http-pprof" help:"also serve Go's profiler under /debug/pprof/ on http-listen (for diagnosis; keep http-listen private)"`

	MaxConns      int `name:"max-connections" help:"most open client connections on all listeners together"`
	MaxConnsPerIP int `name:"max-connections-per-ip" help:"most open client connections from one address (IPv6: one /64)"`

	Backends        []string      `name:"backends" help:"backend servers as name=host:port pairs (comma-separated); names are the directory's mailHost values"`
	BackendToken    string        `name:"backend-token" help:"shared secret sent to backends as 'authorization: Bearer <token>'"`
	BackendTLS      bool          `name:"backend-tls" help:"connect to backends with TLS (implied by backend-ca-file and backend-cert)"`
	BackendCAFile   string        `name:"backend-ca-file" help:"CA file (PEM) that signs backend certificates (empty: system roots)"`
	BackendCert     string        `name:"backend-cert" help:"client certificate file (PEM) for mTLS to backends"`
	BackendKey      string        `name:"backend-key" help:"private key file (PEM) for backend-cert"`
	BackendInsecure bool          `name:"backend-insecure" help:"call backends without a token or client certificate (local development only)"`
	BackendTimeout  time.Duration `name:"backend-timeout" help:"deadline of one backend or directory call, and of Deliver's answer once a message is uploaded"`
	BackendHealth   time.Duration `name:"backend-health-interval" help:"how often each backend's gRPC health service is checked"`

	SMTP SMTPConfig
	IMAP imap.Config // package frontend/imap
	POP3 pop3.Config // package frontend/pop3

	Directory directory.Config
}

// SMTPConfig holds the SMTP service's limits and policies.
type SMTPConfig struct {
	MaxMessageSize   int64         `name:"smtp-max-message-size" help:"largest message accepted, in bytes (K, M, G suffixes); advertised with SIZE"`
	MaxRecipients    int           `name:"smtp-max-recipients" help:"most RCPT commands per message; more get 452 4.5.3"`
	MaxExpanded      int           `name:"smtp-max-expanded" help:"most accounts one message is delivered to after aliases, lists and forwards are expanded"`
	MaxLineLength    int           `name:"smtp-max-line-length" help:"longest text line of a message in bytes including CRLF (RFC 5321 4.5.3.1.6: 1000); a longer one refuses the message (DATA: and closes the connection)"`
	MaxCommandLine   int           `name:"smtp-max-command-line" help:"longest command line in bytes including CRLF (RFC 5321 4.5.3.1.4: 512); MAIL gets room for its parameters, AUTH lines 12288 (RFC 4954); a longer one gets 500 5.5.2 and the session goes on"`
	MaxHops          int           `name:"smtp-max-hops" help:"a message with this many Received fields, ours included, is a mail loop (554 5.4.6)"`
	IdleTimeout      time.Duration `name:"smtp-idle-timeout" help:"how long a client may take to send the next command"`
	DataTimeout      time.Duration `name:"smtp-data-timeout" help:"how long a client may pause while sending a message"`
	SenderCheck      bool          `name:"smtp-sender-check" help:"submission: MAIL FROM must be one of the authenticated user's addresses"`
	InsecureAuth     bool          `name:"smtp-insecure-auth" help:"submission: allow AUTH without TLS (local development only)"`
	MaxBadRecipients int           `name:"smtp-max-bad-recipients" help:"rejected recipients per session before the connection is closed (0: no limit)"`
	MaxAuthFailures  int           `name:"smtp-max-auth-failures" help:"failed AUTH attempts per connection before it is closed (0: no limit)"`
	Vrfy             bool          `name:"smtp-vrfy" help:"submission: answer VRFY for authenticated users (250 local, 550 5.1.1 unknown, 252 remote); off, and always on port 25: 252"`
	Expn             bool          `name:"smtp-expn" help:"submission: answer EXPN for authenticated users with the addresses a list, alias or forward leads to; off, and always on port 25: 502"`
	MaxVrfy          int           `name:"smtp-max-vrfy" help:"VRFY and EXPN commands per session when smtp-vrfy or smtp-expn is on; the next gets 421 4.7.0 and the connection is closed (0: no limit)"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Hostname:          host,
		SMTPListen:        ":25",
		SubmissionListen:  ":587",
		SubmissionsListen: ":465",
		IMAPListen:        ":143",
		IMAPSListen:       ":993",
		POP3Listen:        ":110",
		POP3SListen:       ":995",
		MaxConns:          10000,
		MaxConnsPerIP:     20,
		BackendTimeout:    30 * time.Second,
		BackendHealth:     2 * time.Second,
		SMTP: SMTPConfig{
			MaxMessageSize:   50 << 20,
			MaxRecipients:    100,
			MaxExpanded:      1000,
			MaxLineLength:    1000,
			MaxCommandLine:   512,
			MaxHops:          50,
			IdleTimeout:      5 * time.Minute,
			DataTimeout:      3 * time.Minute,
			SenderCheck:      true,
			MaxBadRecipients: 20,
			MaxAuthFailures:  3,
			MaxVrfy:          20,
		},
		IMAP:      imap.DefaultConfig(),
		POP3:      pop3.DefaultConfig(),
		Directory: directory.DefaultConfig(),
	}
}

// Validate checks the configuration; errors name the setting.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	if c.Hostname == "" {
		bad("hostname", "is required")
	}
	if c.SMTPListen == "" && c.SubmissionListen == "" && c.SubmissionsListen == "" && c.IMAPListen == "" &&
		c.IMAPSListen == "" && c.POP3Listen == "" && c.POP3SListen == "" {
		bad("smtp-listen", "no listener: set at least one of the *-listen addresses")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert", "tls-cert and tls-key go together")
	}
	for name, f := range map[string]string{"tls-cert": c.TLSCert, "tls-key": c.TLSKey, "backend-ca-file": c.BackendCAFile,
		"backend-cert": c.BackendCert, "backend-key": c.BackendKey} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				bad(name, "cannot read %s", f)
			}
		}
	}
	if c.SubmissionsListen != "" && c.TLSCert == "" {
		bad("submissions-listen", "implicit TLS needs tls-cert and tls-key")
	}
	if c.SubmissionListen != "" && c.TLSCert == "" && !c.SMTP.InsecureAuth {
		bad("submission-listen", "AUTH is only offered after STARTTLS: set tls-cert and tls-key (or smtp-insecure-auth for local development)")
	}
	for name, addr := range map[string]string{"imaps-listen": c.IMAPSListen, "pop3s-listen": c.POP3SListen} {
		if addr != "" && c.TLSCert == "" {
			bad(name, "implicit TLS needs tls-cert and tls-key")
		}
	}
	if c.IMAPListen != "" && c.TLSCert == "" && !c.IMAP.InsecureAuth {
		bad("imap-listen", "LOGIN is only allowed after STARTTLS: set tls-cert and tls-key (or imap-insecure-auth for local development)")
	}
	if c.POP3Listen != "" && c.TLSCert == "" && !c.POP3.InsecureAuth {
		bad("pop3-listen", "logins are only allowed after STLS: set tls-cert and tls-key (or pop3-insecure-auth for local development)")
	}
	if c.IMAPListen != "" || c.IMAPSListen != "" {
		if err := c.IMAP.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.POP3Listen != "" || c.POP3SListen != "" {
		if err := c.POP3.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range c.ProxyProtocol {
		if !slices.Contains(listenerNames, p) {
			bad("proxy-protocol", "%q is not one of %s", p, strings.Join(listenerNames, ", "))
		}
	}
	if _, err := listener.ParsePrefixes(c.ProxyNetworks); err != nil {
		bad("proxy-networks", "%v", err)
	}
	if len(c.ProxyProtocol) > 0 && len(c.ProxyNetworks) == 0 {
		bad("proxy-networks", "proxy-protocol needs the networks of the load balancers")
	}
	if c.MaxConns <= 0 {
		bad("max-connections", "must be positive")
	}
	if c.MaxConnsPerIP <= 0 {
		bad("max-connections-per-ip", "must be positive")
	}
	if len(c.Backends) == 0 {
		bad("backends", "at least one backend (name=host:port) is required")
	} else if _, err := pool.ParseBackends(c.Backends); err != nil {
		bad("backends", "%v", err)
	}
	if (c.BackendCert == "") != (c.BackendKey == "") {
		bad("backend-cert", "backend-cert and backend-key go together")
	}
	if !c.BackendInsecure && c.BackendToken == "" && c.BackendCert == "" {
		bad("backend-token", "backends must be called with credentials: set backend-token or backend-cert (or backend-insecure for local development)")
	}
	positive := map[string]int64{
		"backend-timeout": int64(c.BackendTimeout), "backend-health-interval": int64(c.BackendHealth),
		"smtp-max-message-size": c.SMTP.MaxMessageSize, "smtp-max-recipients": int64(c.SMTP.MaxRecipients),
		"smtp-max-expanded": int64(c.SMTP.MaxExpanded), "smtp-idle-timeout": int64(c.SMTP.IdleTimeout),
		"smtp-data-timeout": int64(c.SMTP.DataTimeout),
	}
	for name, v := range positive {
		if v <= 0 {
			bad(name, "must be positive")
		}
	}
	if c.SMTP.MaxHops < 1 {
		bad("smtp-max-hops", "must be at least 1")
	}
	if c.SMTP.MaxLineLength < 512 {
		bad("smtp-max-line-length", "must be at least 512 (RFC 5321 4.5.3.1)")
	}
	if c.SMTP.MaxCommandLine < 512 {
		bad("smtp-max-command-line", "must be at least 512 (RFC 5321 4.5.3.1.4)")
	}
	if c.SMTP.MaxVrfy < 0 {
		bad("smtp-max-vrfy", "must not be negative")
	}
	if c.SMTP.MaxBadRecipients < 0 {
		bad("smtp-max-bad-recipients", "must not be negative")
	}
	if c.SMTP.MaxAuthFailures < 0 {
		bad("smtp-max-auth-failures", "must not be negative")
	}
	if err := c.Directory.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
