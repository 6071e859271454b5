package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Relay is a TCP proxy on loopback in front of a real server, so that a test
// can cut the connection to that server (as if it crashed or the network
// failed) and restore it, while the server itself keeps running for other
// tests.
type Relay struct {
	Addr   string
	target string
	l      net.Listener
	mu     sync.Mutex
	broken bool
	conns  map[net.Conn]struct{}
}

// NewRelay starts a relay to target; it stops when the test ends.
func NewRelay(t testing.TB, target string) *Relay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{Addr: l.Addr().String(), target: target, l: l, conns: map[net.Conn]struct{}{}}
	go r.accept()
	t.Cleanup(func() { l.Close(); r.Break() })
	return r
}

func (r *Relay) accept() {
	for {
		c, err := r.l.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		broken := r.broken
		r.mu.Unlock()
		if broken {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns[c], r.conns[up] = struct{}{}, struct{}{}
		r.mu.Unlock()
		go r.pipe(c, up)
		go r.pipe(up, c)
	}
}

func (r *Relay) pipe(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	r.mu.Lock()
	delete(r.conns, dst)
	delete(r.conns, src)
	r.mu.Unlock()
}

// Break closes every relayed connection and refuses new ones.
func (r *Relay) Break() {
	r.mu.Lock()
	r.broken = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
}

// Restore accepts connections again.
func (r *Relay) Restore() {
	r.mu.Lock()
	r.broken = false
	r.mu.Unlock()
}
