package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// errSizeMismatch is wrapped when a Put reader yields fewer or more bytes
// than the declared size.
var errSizeMismatch = errors.New("blob: body length differs from declared size")

// watchdog cancels a context when an operation makes no progress for d:
// a per-operation timeout that does not cut off a long transfer that keeps
// moving. kick records progress.
type watchdog struct {
	d      time.Duration
	last   atomic.Int64 // unix nanoseconds of the last progress
	timer  *time.Timer
	cancel context.CancelCauseFunc
	fired  atomic.Bool
	paused atomic.Bool
	done   atomic.Bool
}

// newWatchdog returns a context derived from parent that is canceled with
// ErrTimeout after d without a kick, and the watchdog. Call stop when done.
func newWatchdog(parent context.Context, d time.Duration) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(parent)
	w := &watchdog{d: d, cancel: cancel}
	w.last.Store(time.Now().UnixNano())
	w.timer = time.AfterFunc(d, w.check)
	return ctx, w
}

func (w *watchdog) check() {
	if w.done.Load() {
		return
	}
	if w.paused.Load() {
		w.timer.Reset(w.d)
		return
	}
	idle := time.Since(time.Unix(0, w.last.Load()))
	if idle < w.d {
		w.timer.Reset(w.d - idle)
		return
	}
	w.fired.Store(true)
	w.cancel(fmt.Errorf("%w: no progress for %s", ErrTimeout, w.d))
}

func (w *watchdog) kick() { w.last.Store(time.Now().UnixNano()) }

// Read makes the watchdog an io.Reader that counts every call as progress,
// for minio-go's upload progress hook: it sees the bytes as they are sent.
func (w *watchdog) Read(b []byte) (int, error) {
	w.kick()
	return len(b), nil
}

// pause stops the clock while the caller, not the server, has the turn;
// resume restarts it as if progress had just been made.
func (w *watchdog) pause() { w.paused.Store(true) }

func (w *watchdog) resume() {
	w.kick()
	w.paused.Store(false)
}

// stop releases the watchdog and cancels its context.
func (w *watchdog) stop() {
	w.done.Store(true)
	w.timer.Stop()
	w.cancel(context.Canceled)
}

// err returns the error to report for an operation that failed with err:
// the timeout if the watchdog fired, else err.
func (w *watchdog) err(err error) error {
	if err != nil && w.fired.Load() {
		return fmt.Errorf("%w (%v)", ErrTimeout, err)
	}
	return err
}

// putReader wraps a Put body: it fails with ctx's error once ctx is done,
// enforces the declared size (size >= 0) without ever handing out the
// final byte of an oversized body, records the first read error (so that it
// survives wrapping by the transport), and pauses the watchdog while the
// caller's reader has the turn.
type putReader struct {
	ctx  context.Context
	r    io.Reader
	size int64 // declared size, -1 unknown
	n    int64 // bytes delivered
	wd   *watchdog
	err  error // first error returned to the consumer
	eof  bool
}

func (p *putReader) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	if p.eof {
		return 0, io.EOF
	}
	if err := p.ctx.Err(); err != nil {
		return 0, p.fail(context.Cause(p.ctx))
	}
	if p.size >= 0 {
		rem := p.size - p.n
		if rem == 0 {
			// Declared size reached: the body must end here.
			if err := p.probeEnd(); err != nil {
				return 0, p.fail(err)
			}
			p.eof = true
			return 0, io.EOF
		}
		if int64(len(b)) > rem {
			b = b[:rem]
		}
	}
	n, err := p.read(b)
	p.n += int64(n)
	if p.size >= 0 && p.n == p.size && err == nil {
		// Hold back the last bytes until we know nothing follows.
		if perr := p.probeEnd(); perr != nil {
			return 0, p.fail(perr)
		}
		p.eof = true
		return n, io.EOF
	}
	switch {
	case err == io.EOF:
		if p.size >= 0 && p.n < p.size {
			return 0, p.fail(fmt.Errorf("%w: got %d of %d bytes", errSizeMismatch, p.n, p.size))
		}
		p.eof = true
		return n, io.EOF
	case err != nil:
		return 0, p.fail(fmt.Errorf("blob: reading body: %w", err))
	}
	if err := p.ctx.Err(); err != nil {
		return 0, p.fail(context.Cause(p.ctx))
	}
	return n, nil
}

// probeEnd checks that the underlying reader has no more data.
func (p *putReader) probeEnd() error {
	var one [1]byte
	for range 100 {
		n, err := p.read(one[:])
		if n > 0 {
			return fmt.Errorf("%w: more than %d bytes", errSizeMismatch, p.size)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("blob: reading body: %w", err)
		}
	}
	return io.ErrNoProgress
}

// read reads from the caller's reader, with the watchdog paused: time spent
// there is the caller's, not the server's.
func (p *putReader) read(b []byte) (int, error) {
	if p.wd == nil {
		return p.r.Read(b)
	}
	p.wd.pause()
	defer p.wd.resume()
	return p.r.Read(b)
}

func (p *putReader) fail(err error) error {
	if p.err == nil {
		p.err = err
	}
	return p.err
}
