package smtp_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// mailcluster: a body is read through a larger buffer from a pool; messages
// of every size come out exact, and commands sent right after the body, in
// the same packet, are read and answered in order.
func TestBodyReadBufferSwap(t *testing.T) {
	be, s, c, scanner := testServerAuthenticated(t)
	defer s.Close()
	defer c.Close()
	expect := func(prefix string) {
		t.Helper()
		if !scanner.Scan() || !strings.HasPrefix(scanner.Text(), prefix) {
			t.Fatalf("got %q, want %s...", scanner.Text(), prefix)
		}
	}
	var want []string
	for i, size := range []int{10, 40 << 10, 300 << 10, 10, 40 << 10, 300 << 10} {
		var body bytes.Buffer
		fmt.Fprintf(&body, "Subject: m%d\r\n\r\n", i)
		for body.Len() < size {
			body.WriteString("a line of the body, and .dots\r\n")
		}
		want = append(want, body.String())
		cmds := "MAIL FROM:<root@nsa.gov>\r\nRCPT TO:<root@gchq.gov.uk>\r\nDATA\r\n"
		rest := body.String() + ".\r\nNOOP\r\nRSET\r\n"
		if i >= 3 {
			// The body sent with DATA, without waiting for 354: its
			// start is in the connection's buffer already.
			io.WriteString(c, cmds+rest)
			expect("250 ")
			expect("250 ")
			expect("354 ")
		} else {
			io.WriteString(c, cmds)
			expect("250 ")
			expect("250 ")
			expect("354 ")
			// The end of the body and the next commands in one write.
			io.WriteString(c, rest)
		}
		expect("250 ")
		expect("250 ")
		expect("250 ")
	}
	if len(be.messages) != 6 {
		t.Fatalf("%d messages", len(be.messages))
	}
	for i, m := range be.messages {
		if string(m.Data) != want[i] {
			t.Errorf("message %d: %d octets, want %d", i, len(m.Data), len(want[i]))
		}
	}
}
