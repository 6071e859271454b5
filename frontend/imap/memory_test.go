//go:build !race

package imap

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// Idle IMAP connections are cheap: the issue asks for under 50 KiB of
// frontend memory per IDLE connection (heap and stacks, measured in
// process; the backend and the raw test clients share the process but add
// little per connection).
func TestIdleConnectionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 300 connections")
	}
	st := newStack(t, 1)
	id := st.user("mem")
	deliver(t, st.clients[0], id, testMessage(1))
	_, addr := st.frontend(nil, 0)
	const n = 300
	conns := make([]net.Conn, 0, n)
	open := func(k int) {
		for i := 0; i < k; i++ {
			r := dialRaw(t, addr)
			r.send("a LOGIN mem secret\r\nb SELECT INBOX\r\nc IDLE\r\n")
			r.expect("a OK")
			r.expect("b OK")
			r.expect("+ ")
			conns = append(conns, r.conn)
		}
	}
	measure := func() uint64 {
		time.Sleep(200 * time.Millisecond)
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	open(20) // warm up pools, caches and the shared mailbox state
	before := measure()
	open(n)
	after := measure()
	per := float64(after-before) / n / 1024
	t.Logf("%.1f KiB per idle IMAP connection (%d connections)", per, n)
	if per > 50 {
		t.Fatalf("%.1f KiB per idle connection, want under 50", per)
	}
}
