package smtpserver

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
)

// BenchmarkData sends messages over one connection to the inbound server
// of the fuzz environment (fake directory, in-process fake backend), so that
// it measures the frontend's own cost per message: go-smtp's DATA reader,
// the checks while streaming, and the gRPC stream to the backend.
func BenchmarkData(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		b.Run(map[int]string{4 << 10: "4KiB", 1 << 20: "1MiB"}[size], func(b *testing.B) {
			e := newFuzzEnv(b)
			e.be.mu.Lock()
			e.be.delivered = nil
			e.be.mu.Unlock()
			line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab", 1) + "\r\n"
			body := "Subject: bench\r\n\r\n" + strings.Repeat(line, size/len(line))
			c, err := net.Dial("tcp", e.addrs[Inbound])
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			expect := func(prefix string) {
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						b.Fatal(err)
					}
					if !strings.HasPrefix(l, prefix) {
						b.Fatalf("%q, want %q", l, prefix)
					}
					if l[3] == ' ' {
						return
					}
				}
			}
			expect("220")
			io.WriteString(c, "EHLO bench\r\n")
			expect("250")
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				io.WriteString(c, "MAIL FROM:<b@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
				expect("250")
				expect("250")
				expect("354")
				io.WriteString(c, body+".\r\n")
				expect("250")
			}
		})
	}
}
