package pop3

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// Config configures a POP3 server. Fields with a name tag are settings (see
// internal/config); the others are set by the frontend role.
type Config struct {
	// Hostname is named in the greeting. Set by the frontend role.
	Hostname string
	// TLS, when set, enables STLS on plaintext connections (RFC 2595). On an
	// implicit-TLS listener (995) the listener does the handshake (Serve
	// recognises *tls.Conn). Set by the frontend role.
	TLS *tls.Config
	// BackendTimeout bounds one directory or backend call, and each wait
	// for the next piece of a message body. Set by the frontend role
	// (backend-timeout).
	BackendTimeout time.Duration

	InsecureAuth     bool          `name:"pop3-insecure-auth" help:"allow USER/PASS and AUTH on connections without TLS (local development only)"`
	IdleTimeout      time.Duration `name:"pop3-idle-timeout" help:"close a POP3 connection that sends no command for this long (at least 10m, RFC 1939 section 3)"`
	MaxLineLength    int           `name:"pop3-max-line-length" help:"longest POP3 command line in bytes, CRLF included; longer lines close the connection"`
	MaxAuthCommands  int           `name:"pop3-max-auth-commands" help:"commands a POP3 client may send before it has logged in"`
	MaxBadCommands   int           `name:"pop3-max-bad-commands" help:"unknown, malformed or out-of-state POP3 commands before the connection is closed"`
	MaxAuthFailures  int           `name:"pop3-max-auth-failures" help:"failed POP3 logins per connection before it is closed"`
	MaxMessages      int           `name:"pop3-max-messages" help:"most messages a POP3 session offers: the newest this many of the INBOX (0: all)"`
	ReadAhead        int           `name:"pop3-read-ahead" help:"messages after the one a RETR asks for that are fetched from the backend ahead, in memory, for the RETRs that follow, in batches of at least half this many per call (0: none)"`
	ReadAheadMemory  int64         `name:"pop3-read-ahead-memory" help:"bytes all POP3 sessions of this frontend may hold read ahead together (K, M, G suffixes)"`
	AuthFailureDelay time.Duration `name:"pop3-auth-failure-delay" help:"wait before answering a failed POP3 login (on top of the directory's per-address backoff)"`
}

// DefaultConfig returns the defaults: the values of Dovecot's POP3 where it
// has one.
func DefaultConfig() Config {
	return Config{
		Hostname:         "localhost",
		IdleTimeout:      10 * time.Minute,
		MaxLineLength:    4096,
		MaxAuthCommands:  30,
		MaxBadCommands:   20,
		MaxAuthFailures:  3,
		MaxMessages:      100000,
		ReadAhead:        32,
		ReadAheadMemory:  64 << 20,
		AuthFailureDelay: 2 * time.Second,
		BackendTimeout:   30 * time.Second,
	}
}

// Validate checks the configuration; errors name the setting.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	if c.MaxMessages < 0 {
		bad("pop3-max-messages", "must not be negative")
	}
	if c.IdleTimeout < 10*time.Minute {
		bad("pop3-idle-timeout", "must be at least 10m (RFC 1939 section 3)")
	}
	// 255 octets is RFC 2449's command limit; SASL PLAIN responses carrying
	// a long password need more.
	if c.MaxLineLength < 512 || c.MaxLineLength > 1<<20 {
		bad("pop3-max-line-length", "must be between 512 and 1048576")
	}
	if c.MaxAuthCommands < 1 {
		bad("pop3-max-auth-commands", "must be at least 1")
	}
	if c.MaxBadCommands < 1 {
		bad("pop3-max-bad-commands", "must be at least 1")
	}
	if c.MaxAuthFailures < 1 {
		bad("pop3-max-auth-failures", "must be at least 1")
	}
	if c.ReadAhead < 0 || c.ReadAhead > 64 {
		bad("pop3-read-ahead", "must be between 0 and 64")
	}
	if c.ReadAheadMemory < 0 {
		bad("pop3-read-ahead-memory", "must not be negative")
	}
	if c.AuthFailureDelay < 0 || c.AuthFailureDelay > time.Minute {
		bad("pop3-auth-failure-delay", "must be between 0 and 1m")
	}
	return errors.Join(errs...)
}
