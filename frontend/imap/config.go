package imap

import (
	"errors"
	"fmt"
	"time"
)

// Config configures the IMAP service. Start from DefaultConfig; names and
// help tags follow internal/config so the frontend role can load it from
// flags and MAILCLUSTER_* variables.
type Config struct {
	// InsecureAuth allows LOGIN and AUTHENTICATE without TLS on listeners
	// served with Serve. Only for local development: otherwise clients see
	// LOGINDISABLED until STARTTLS (RFC 9051 section 6.2.3).
	InsecureAuth bool `name:"imap-insecure-auth" help:"allow IMAP LOGIN without TLS on every IMAP listener (local development only)"`
	// RPCTimeout bounds one unary backend call; StreamTimeout one streamed
	// call (FETCH of a large mailbox, a message body, APPEND).
	RPCTimeout    time.Duration `name:"imap-rpc-timeout" help:"deadline of one backend call made for an IMAP command"`
	StreamTimeout time.Duration `name:"imap-stream-timeout" help:"deadline of one streamed backend call (FETCH, bodies, APPEND)"`
	// MaxAppendSize is the largest message APPEND accepts (APPENDLIMIT);
	// larger literals are refused with NO [TOOBIG] before they are read.
	MaxAppendSize int64 `name:"imap-max-append-size" help:"largest message IMAP APPEND accepts (bytes; K, M, G suffixes)"`
	// MaxSearchDepth bounds the nesting of NOT and OR in SEARCH.
	MaxSearchDepth int `name:"imap-max-search-depth" help:"deepest nesting of NOT/OR accepted in IMAP SEARCH"`
	// FetchBatch is the number of messages asked of the backend per FETCH
	// batch.
	FetchBatch int `name:"imap-fetch-batch" help:"messages per backend batch when streaming an IMAP FETCH"`
	// MaxMailboxName bounds a mailbox name in bytes (UTF-8).
	MaxMailboxName int `name:"imap-max-mailbox-name" help:"longest mailbox name accepted by CREATE and RENAME (bytes)"`
	// MaxAuthFailures is how many failed LOGIN/AUTHENTICATE attempts one
	// connection may make before it is closed.
	MaxAuthFailures int `name:"imap-max-auth-failures" help:"failed IMAP authentications after which a connection is closed"`
	// EnvelopeCache bounds the bytes of rendered ENVELOPEs kept for FETCH
	// (envcache.go); 0 turns the cache off.
	EnvelopeCache int64 `name:"imap-envelope-cache" help:"memory for ENVELOPEs already rendered, reused by later FETCHes of the same messages (bytes; K, M, G suffixes; 0: off)"`
	// MessageCache bounds the memory, over all selected mailboxes, of
	// what the frontend keeps of each message (flags, MODSEQ, size,
	// INTERNALDATE, ENVELOPE) to answer FETCH and SEARCH without the
	// backend (msgcache.go); 0 turns it off.
	MessageCache int64 `name:"imap-message-cache" help:"memory for the flags, sizes, dates and ENVELOPEs of the messages of selected mailboxes, with which the frontend answers FETCH and SEARCH itself (bytes; K, M, G suffixes; 0: off)"`
	// WatchRetry is the longest wait between attempts to reopen the
	// backend Watch stream.
	WatchRetry time.Duration `name:"imap-watch-retry" help:"longest wait before reopening the backend watch stream after it failed"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		RPCTimeout:      30 * time.Second,
		StreamTimeout:   10 * time.Minute,
		MaxAppendSize:   50 << 20,
		MaxSearchDepth:  32,
		FetchBatch:      500,
		MaxMailboxName:  512,
		MaxAuthFailures: 5,
		WatchRetry:      5 * time.Second,
		EnvelopeCache:   64 << 20,
		MessageCache:    128 << 20,
	}
}

// Validate checks the settings.
func (c *Config) Validate() error {
	var errs []error
	if c.RPCTimeout <= 0 {
		errs = append(errs, errors.New("imap-rpc-timeout must be positive"))
	}
	if c.StreamTimeout <= 0 {
		errs = append(errs, errors.New("imap-stream-timeout must be positive"))
	}
	if c.MaxAppendSize <= 0 || c.MaxAppendSize > 1<<32-1 {
		errs = append(errs, fmt.Errorf("imap-max-append-size must be between 1 and %d", int64(1<<32-1)))
	}
	if c.MaxSearchDepth < 1 || c.MaxSearchDepth > 64 {
		errs = append(errs, errors.New("imap-max-search-depth must be between 1 and 64"))
	}
	if c.FetchBatch < 1 || c.FetchBatch > 10000 {
		errs = append(errs, errors.New("imap-fetch-batch must be between 1 and 10000"))
	}
	if c.MaxMailboxName < 16 || c.MaxMailboxName > 4096 {
		errs = append(errs, errors.New("imap-max-mailbox-name must be between 16 and 4096"))
	}
	if c.MaxAuthFailures < 1 {
		errs = append(errs, errors.New("imap-max-auth-failures must be at least 1"))
	}
	if c.EnvelopeCache < 0 {
		errs = append(errs, errors.New("imap-envelope-cache must not be negative"))
	}
	if c.MessageCache < 0 {
		errs = append(errs, errors.New("imap-message-cache must not be negative"))
	}
	if c.WatchRetry <= 0 {
		errs = append(errs, errors.New("imap-watch-retry must be positive"))
	}
	return errors.Join(errs...)
}
