package listener

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func v2Header(cmd byte, fam byte, body []byte) []byte {
	h := append([]byte{}, sigV2...)
	h = append(h, 0x20|cmd, fam, 0, 0)
	binary.BigEndian.PutUint16(h[14:16], uint16(len(body)))
	return append(h, body...)
}

func TestReadHeader(t *testing.T) {
	v4 := []byte{192, 0, 2, 1, 198, 51, 100, 1, 0x30, 0x39, 0, 25}
	v6 := make([]byte, 36)
	copy(v6, netip.MustParseAddr("2001:db8::7").AsSlice())
	binary.BigEndian.PutUint16(v6[32:], 4242)
	cases := []struct {
		name, in, want, err string
	}{
		{"v1 tcp4", "PROXY TCP4 192.0.2.1 198.51.100.1 12345 25\r\n", "192.0.2.1:12345", ""},
		{"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 1 25\r\n", "[2001:db8::1]:1", ""},
		{"v1 unknown", "PROXY UNKNOWN\r\n", "", ""},
		{"v1 family mismatch", "PROXY TCP4 2001:db8::1 2001:db8::2 1 25\r\n", "", "source"},
		{"v1 bad port", "PROXY TCP4 192.0.2.1 198.51.100.1 99999 25\r\n", "", "port"},
		{"v1 leading zero port", "PROXY TCP4 192.0.2.1 198.51.100.1 025 25\r\n", "", "port"},
		{"v1 no CRLF", "PROXY TCP4 192.0.2.1 198.51.100.1 1 25\n", "", "CRLF"},
		{"v1 too long", "PROXY TCP4 " + strings.Repeat("1", 200) + "\r\n", "", "too long"},
		{"v1 fields", "PROXY TCP4 192.0.2.1 1 25\r\n", "", "malformed"},
		{"v2 tcp4", string(v2Header(1, 0x11, v4)), "192.0.2.1:12345", ""},
		{"v2 tcp6", string(v2Header(1, 0x21, v6)), "[2001:db8::7]:4242", ""},
		{"v2 local", string(v2Header(0, 0x00, nil)), "", ""},
		{"v2 short", string(v2Header(1, 0x11, v4[:8])), "", "short"},
		{"v2 tlvs", string(v2Header(1, 0x11, append(append([]byte{}, v4...), 1, 0, 2, 'h', '2'))), "192.0.2.1:12345", ""},
		{"none", "EHLO example.org\r\n", "", "no PROXY"},
		{"truncated", "PRO", "", "no PROXY"},
		{"v2 truncated", string(sigV2[:8]), "", "signature"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The client's data follows the header: it must not be read.
			r := bytes.NewReader([]byte(c.in + "EHLO x\r\n"))
			a, err := ReadHeader(r)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if a != nil {
				got = a.String()
			}
			if got != c.want {
				t.Fatalf("addr = %q, want %q", got, c.want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != "EHLO x\r\n" {
				t.Fatalf("read past the header: rest %q", rest)
			}
		})
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.1 12345 25\r\n"))
	f.Add(v2Header(1, 0x11, []byte{192, 0, 2, 1, 198, 51, 100, 1, 0x30, 0x39, 0, 25}))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		a, err := ReadHeader(r)
		if err == nil && a != nil {
			if _, err := netip.ParseAddrPort(a.String()); err != nil {
				t.Fatalf("bad address %v", a)
			}
		}
	})
}

// serve starts a Listener on loopback that answers each connection with its
// client address.
func serve(t *testing.T, cfg Config) *Listener {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, cfg)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				io.WriteString(c, "hello "+ClientIP(c).String()+"\r\n")
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	return l
}

func dial(t *testing.T, l *Listener, header string) (net.Conn, string) {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, header)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return c, line
}

func TestProxyOnlyFromTrustedNetworks(t *testing.T) {
	trusted := serve(t, Config{Proxy: true, ProxyFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if _, got := dial(t, trusted, "PROXY TCP4 203.0.113.9 127.0.0.1 5555 25\r\n"); got != "hello 203.0.113.9\r\n" {
		t.Fatalf("trusted proxy: %q", got)
	}
	// A trusted peer without a header is refused (closed).
	if _, got := dial(t, trusted, "EHLO x\r\n"); got != "" {
		t.Fatalf("missing header: %q", got)
	}
	// From an untrusted peer the header is not interpreted.
	untrusted := serve(t, Config{Proxy: true, ProxyFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if _, got := dial(t, untrusted, "PROXY TCP4 203.0.113.9 127.0.0.1 5555 25\r\n"); got != "hello 127.0.0.1\r\n" {
		t.Fatalf("untrusted peer: %q", got)
	}
	// Off by default.
	off := serve(t, Config{})
	if _, got := dial(t, off, "PROXY TCP4 203.0.113.9 127.0.0.1 5555 25\r\n"); got != "hello 127.0.0.1\r\n" {
		t.Fatalf("proxy off: %q", got)
	}
}

func TestConnectionLimits(t *testing.T) {
	lim := NewLimits(3, 2)
	l := serve(t, Config{Proxy: true, ProxyFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Limits: lim,
		Busy: func(perIP bool) string {
			if perIP {
				return "busy ip\r\n"
			}
			return "busy\r\n"
		}})
	hdr := func(ip string) string { return "PROXY TCP4 " + ip + " 127.0.0.1 5555 25\r\n" }
	a1, got := dial(t, l, hdr("192.0.2.1"))
	if got != "hello 192.0.2.1\r\n" {
		t.Fatal(got)
	}
	dial(t, l, hdr("192.0.2.1"))
	if _, got := dial(t, l, hdr("192.0.2.1")); got != "busy ip\r\n" {
		t.Fatalf("third from one address: %q", got)
	}
	dial(t, l, hdr("192.0.2.2"))
	if _, got := dial(t, l, hdr("192.0.2.3")); got != "busy\r\n" {
		t.Fatalf("fourth in total: %q", got)
	}
	// Closing a connection frees its slot.
	a1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for lim.Open() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, got := dial(t, l, hdr("192.0.2.1")); got != "hello 192.0.2.1\r\n" {
		t.Fatalf("after a close: %q", got)
	}
	// IPv6 clients are counted per /64.
	lim6 := NewLimits(0, 1)
	l6 := serve(t, Config{Proxy: true, ProxyFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Limits: lim6,
		Busy: func(bool) string { return "busy\r\n" }})
	h6 := func(ip string) string { return "PROXY TCP6 " + ip + " ::1 5555 25\r\n" }
	dial(t, l6, h6("2001:db8::1"))
	if _, got := dial(t, l6, h6("2001:db8::2")); got != "busy\r\n" {
		t.Fatalf("same /64: %q", got)
	}
	if _, got := dial(t, l6, h6("2001:db8:0:1::1")); got != "hello 2001:db8:0:1::1\r\n" {
		t.Fatalf("other /64: %q", got)
	}
}

func TestCloseConns(t *testing.T) {
	l := serve(t, Config{})
	c, _ := dial(t, l, "")
	l.CloseConns()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after CloseConns: %v", err)
	}
}
