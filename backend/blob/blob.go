// Package blob stores message bodies: one immutable object per stored body,
// under a key the backend chooses (for example "b/2026/11/25/<random>").
//
// Two implementations satisfy Store: NewS3 (any S3-compatible server: MinIO,
// Ceph RGW, AWS S3, Versity S3 Gateway) for clusters, and NewFS (a local
// directory) for single-node installs and the local development cluster.
// Package blobtest holds the conformance suite both pass.
//
// This package is the only importer of github.com/minio/minio-go in the
// project: callers classify errors with errors.Is (ErrNotFound,
// ErrInvalidKey, ErrTimeout, context errors) and IsTemporary, never by
// looking at minio-go types.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/minio/minio-go/v7"
)

// ErrNotFound is returned by Get for a key that does not exist.
var ErrNotFound = errors.New("blob: not found")

// ErrInvalidKey is returned (wrapped, with the key) by every Store method for
// a key or List prefix that is not valid (see ValidKey).
var ErrInvalidKey = errors.New("blob: invalid key")

// ErrTimeout is returned (wrapped) when an operation made no progress for the
// store's configured timeout. It wraps context.DeadlineExceeded and
// IsTemporary reports true for it.
var ErrTimeout = fmt.Errorf("blob: operation timed out: %w", context.DeadlineExceeded)

// Store holds message bodies. Implementations are safe for concurrent use.
//
// Keys must satisfy ValidKey; every method rejects other keys with an error
// wrapping ErrInvalidKey before touching storage. A key that is a path prefix
// of another ("a" and "a/b") is not portable: file-backed stores (NewFS, and
// S3 servers with a POSIX backend) refuse the second Put.
type Store interface {
	// Put stores size bytes from r under key (size -1: unknown, read to EOF). When it returns nil the object is durable
	// (S3 acknowledged the PUT / the file and its directory are fsynced) and complete: a reader never sees a partial object.
	// Putting an existing key replaces it atomically.
	//
	// If r returns an error, yields fewer or more than size bytes (size >= 0),
	// or ctx is done before the object is complete, Put returns an error
	// (wrapping r's error or ctx.Err()) and the key keeps its previous state:
	// absent, or the old object.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get returns length bytes from offset (length < 0: to the end). Reading past the end returns what exists.
	//
	// A missing key gives an error wrapping ErrNotFound, reported by Get itself
	// (not by the first Read). A negative offset is an error. The reader sees
	// one version of the object even if the key is overwritten meanwhile. The
	// caller must Close it; ctx governs the reads too.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for each key with the prefix, in lexical order, with its modification time; fn's error stops the walk and is returned.
	//
	// Lexical order is byte order of the UTF-8 keys, as S3 lists them. The
	// prefix is a plain string prefix ("a/1" matches "a/1" and "a/10/x"); it
	// must be empty or extendable to a valid key, else ErrInvalidKey. Keys
	// put or deleted during the walk may or may not be reported.
	List(ctx context.Context, prefix string, fn func(key string, modTime time.Time) error) error
	// Ping checks that the store is reachable and usable (for readiness).
	Ping(ctx context.Context) error
}

// Key limits enforced by ValidKey.
const (
	MaxKeyLen       = 1024 // bytes, as S3
	MaxComponentLen = 255  // bytes, as most file systems
)

// ValidKey reports why key is not a valid blob key, or nil. A valid key is
// 1 to MaxKeyLen bytes of UTF-8 without control characters or backslashes,
// made of "/"-separated components that are non-empty, at most
// MaxComponentLen bytes and do not start with "." (so no ".", "..", hidden
// or temporary names, no absolute paths, no "a//b" or trailing "/").
// The same rule holds for every Store so that keys are portable between them.
func ValidKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return bad("empty")
	case len(key) > MaxKeyLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxKeyLen))
	case !utf8.ValidString(key):
		return bad("not UTF-8")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return bad("contains a control character")
		}
		if r == '\\' {
			return bad("contains a backslash")
		}
	}
	for c := range strings.SplitSeq(key, "/") {
		switch {
		case c == "":
			return bad("empty path component (leading, trailing or double \"/\")")
		case c[0] == '.':
			return bad("path component starts with \".\"")
		case len(c) > MaxComponentLen:
			return bad(fmt.Sprintf("path component longer than %d bytes", MaxComponentLen))
		}
	}
	return nil
}

// validPrefix reports whether prefix can begin a valid key.
func validPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > MaxKeyLen {
		return fmt.Errorf("%w: prefix longer than %d bytes", ErrInvalidKey, MaxKeyLen)
	}
	if err := ValidKey(prefix + "x"); err != nil {
		return fmt.Errorf("%w: prefix %q cannot begin a valid key", ErrInvalidKey, prefix)
	}
	return nil
}

// checkPut checks the arguments of a Put to a store of the given kind.
func checkPut(ctx context.Context, kind, key string, size int64) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if size < -1 {
		return fmt.Errorf("blob: %s put %q: invalid size %d", kind, key, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: %s put %q: %w", kind, key, err)
	}
	return nil
}

// checkGet checks the arguments of a Get from a store of the given kind.
func checkGet(ctx context.Context, kind, key string, offset int64) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if offset < 0 {
		return fmt.Errorf("blob: %s get %q: negative offset %d", kind, key, offset)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: %s get %q: %w", kind, key, err)
	}
	return nil
}

// IsTemporary reports whether err is a transient failure (network, timeout, 5xx, throttling) that the caller should report as "try again later".
//
// Context cancellation by the caller, ErrNotFound, ErrInvalidKey,
// configuration and permission errors are not temporary. A full or failing
// disk (ENOSPC, EDQUOT, EIO) is: mail must be deferred, not bounced.
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidKey) {
		return false
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "RequestTimeout", "Throttling", "ThrottlingException", "RequestLimitExceeded",
			"RequestThrottled", "SlowDown", "SlowDownWrite", "SlowDownRead", "InternalError",
			"ServiceUnavailable", "ExpiredToken", "ExpiredTokenException":
			return true
		}
		return er.StatusCode >= 500 || er.StatusCode == 429 || er.StatusCode == 408
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
			syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ENETDOWN,
			syscall.EAGAIN, syscall.EINTR, syscall.ENOSPC, syscall.EDQUOT, syscall.EIO,
			syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM:
			return true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.IsTemporary || de.IsTimeout || de.IsNotFound
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return true // connection cut mid-response
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// Transport-level failure talking to the server (connection closed
		// mid-request, bad response): not a decision by the server.
		return errors.Is(ue.Err, io.EOF) || strings.Contains(ue.Err.Error(), "connection")
	}
	return false
}
