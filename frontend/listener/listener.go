// Package listener wraps a TCP listener for the frontend's protocols: it
// reads the HAProxy PROXY protocol header (v1 text or v2 binary) from peers
// in trusted networks, so that the client's real address is what the
// protocols see, and it enforces the total and per-client-address connection
// limits before a protocol server sees the connection.
package listener

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config configures a Listener.
type Config struct {
	// Name names the listener in logs ("smtp", "submission", …).
	Name string
	// Proxy enables the PROXY protocol: peers in ProxyFrom must send a
	// header; connections from other peers are served as direct clients.
	Proxy     bool
	ProxyFrom []netip.Prefix
	// HeaderTimeout bounds reading the PROXY header.
	HeaderTimeout time.Duration
	// MaxConns limits open connections on this listener (0: no limit);
	// MaxPerIP limits them per client address (IPv6 per /64; 0: no limit).
	// Counters may be shared between listeners with a shared Limits.
	Limits *Limits
	// Busy, if set, returns the line sent to a client that is refused for a
	// limit (perIP tells which) before the connection is closed; nil closes
	// silently (for implicit-TLS listeners, where plaintext is useless).
	Busy func(perIP bool) string
	// Refused, if set, is called for each connection refused for a limit.
	Refused func(perIP bool)
	Log     *slog.Logger
}

// Limits counts connections, overall and per client address, for one or
// more listeners.
type Limits struct {
	MaxConns, MaxPerIP int
	mu                 sync.Mutex
	total              int
	perIP              map[netip.Prefix]int
}

// NewLimits returns connection counters with the given limits (0: none).
func NewLimits(maxConns, maxPerIP int) *Limits {
	return &Limits{MaxConns: maxConns, MaxPerIP: maxPerIP, perIP: map[netip.Prefix]int{}}
}

// key groups client addresses: IPv4 per address, IPv6 per /64.
func key(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// acquire counts a connection from ip, or reports which limit refuses it.
func (l *Limits) acquire(ip netip.Addr) (ok, perIP bool) {
	k := key(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.MaxConns > 0 && l.total >= l.MaxConns {
		return false, false
	}
	if l.MaxPerIP > 0 && l.perIP[k] >= l.MaxPerIP {
		return false, true
	}
	l.total++
	l.perIP[k]++
	return true, false
}

func (l *Limits) release(ip netip.Addr) {
	k := key(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[k]--; l.perIP[k] <= 0 {
		delete(l.perIP, k)
	}
}

// Open returns the number of connections counted now.
func (l *Limits) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Listener is a net.Listener whose connections carry the client's real
// address and are counted against the limits until closed.
type Listener struct {
	inner net.Listener
	cfg   Config
	conns chan net.Conn
	errc  chan error
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	open  map[*counted]struct{}
}

// New wraps inner and starts accepting.
func New(inner net.Listener, cfg Config) *Listener {
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 5 * time.Second
	}
	if cfg.Limits == nil {
		cfg.Limits = NewLimits(0, 0)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	l := &Listener{inner: inner, cfg: cfg, conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{}),
		open: map[*counted]struct{}{}}
	go l.loop()
	return l
}

func (l *Listener) loop() {
	var delay time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			select {
			case <-l.done:
				return
			default:
			}
			if !errors.Is(err, net.ErrClosed) && delay < time.Second {
				// Out of file descriptors and the like: back off.
				delay = max(5*time.Millisecond, 2*delay)
				l.cfg.Log.Warn("accept", "listener", l.cfg.Name, "err", err)
				time.Sleep(delay)
				continue
			}
			l.errc <- err
			return
		}
		delay = 0
		go l.admit(c)
	}
}

// admit reads the PROXY header if needed, applies the limits and hands the
// connection to Accept.
func (l *Listener) admit(c net.Conn) {
	peer := addrOf(c.RemoteAddr())
	conn := net.Conn(c)
	if l.cfg.Proxy && l.trusted(peer) {
		c.SetReadDeadline(time.Now().Add(l.cfg.HeaderTimeout))
		src, err := ReadHeader(c)
		c.SetReadDeadline(time.Time{})
		if err != nil {
			l.cfg.Log.Warn("PROXY header", "listener", l.cfg.Name, "peer", peer, "err", err)
			c.Close()
			return
		}
		if src != nil {
			conn = &proxied{Conn: c, remote: src}
		}
	}
	ip := addrOf(conn.RemoteAddr())
	ok, perIP := l.cfg.Limits.acquire(ip)
	if !ok {
		l.cfg.Log.Warn("connection refused: limit reached", "listener", l.cfg.Name, "client", ip, "per_ip", perIP)
		if l.cfg.Refused != nil {
			l.cfg.Refused(perIP)
		}
		if l.cfg.Busy != nil {
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			io.WriteString(c, l.cfg.Busy(perIP))
		}
		c.Close()
		return
	}
	cc := &counted{Conn: conn}
	cc.release = func() {
		l.cfg.Limits.release(ip)
		l.mu.Lock()
		delete(l.open, cc)
		l.mu.Unlock()
	}
	l.mu.Lock()
	l.open[cc] = struct{}{}
	l.mu.Unlock()
	select {
	case l.conns <- cc:
	case <-l.done:
		cc.Close()
	}
}

func (l *Listener) trusted(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range l.cfg.ProxyFrom {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Accept returns the next admitted connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		l.errc <- err
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting. Connections already accepted stay open.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

// CloseConns closes every connection this listener accepted that is still
// open (the end of a graceful shutdown).
func (l *Listener) CloseConns() {
	l.mu.Lock()
	conns := make([]*counted, 0, len(l.open))
	for c := range l.open {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// ClientIP returns the client address of a connection accepted by a
// Listener (the PROXY source when there was a header).
func ClientIP(c net.Conn) netip.Addr { return addrOf(c.RemoteAddr()) }

type proxied struct {
	net.Conn
	remote net.Addr
}

func (p *proxied) RemoteAddr() net.Addr { return p.remote }

type counted struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *counted) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

var sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")

// ReadHeader reads a PROXY protocol header (v1 or v2) from r without
// reading past it, and returns the client's address; nil means the header
// says the connection is the proxy's own (v1 UNKNOWN, v2 LOCAL or a
// non-TCP family), so its real address stands.
func ReadHeader(r io.Reader) (net.Addr, error) {
	var start [6]byte
	if _, err := io.ReadFull(r, start[:]); err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	switch {
	case string(start[:]) == "PROXY ":
		return readV1(r)
	case bytes.Equal(start[:], sigV2[:6]):
		return readV2(r)
	}
	return nil, errors.New("no PROXY protocol header")
}

// readV1 reads the rest of "PROXY TCP4 src dst sport dport\r\n" (at most
// 107 bytes in all), byte by byte so as not to read into the client's data.
func readV1(r io.Reader) (net.Addr, error) {
	var line []byte
	var b [1]byte
	for len(line) < 107-6 {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("reading v1 header: %w", err)
		}
		line = append(line, b[0])
		if b[0] == '\n' {
			break
		}
	}
	if !bytes.HasSuffix(line, []byte("\r\n")) {
		return nil, errors.New("v1 header too long or not terminated by CRLF")
	}
	f := strings.Split(string(line[:len(line)-2]), " ")
	if f[0] == "UNKNOWN" {
		return nil, nil
	}
	if len(f) != 5 || (f[0] != "TCP4" && f[0] != "TCP6") {
		return nil, fmt.Errorf("malformed v1 header %q", line)
	}
	ip, err := netip.ParseAddr(f[1])
	if err != nil || ip.Is4() != (f[0] == "TCP4") {
		return nil, fmt.Errorf("malformed v1 source address %q", f[1])
	}
	if _, err := netip.ParseAddr(f[2]); err != nil {
		return nil, fmt.Errorf("malformed v1 destination address %q", f[2])
	}
	port, err := strconv.ParseUint(f[3], 10, 16)
	if err != nil || (len(f[3]) > 1 && f[3][0] == '0') {
		return nil, fmt.Errorf("malformed v1 source port %q", f[3])
	}
	if _, err := strconv.ParseUint(f[4], 10, 16); err != nil {
		return nil, fmt.Errorf("malformed v1 destination port %q", f[4])
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))), nil
}

func readV2(r io.Reader) (net.Addr, error) {
	var h [10]byte // rest of the signature, ver/cmd, family, length
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("reading v2 header: %w", err)
	}
	if !bytes.Equal(h[:6], sigV2[6:]) {
		return nil, errors.New("bad v2 signature")
	}
	verCmd, fam := h[6], h[7]
	n := int(binary.BigEndian.Uint16(h[8:10]))
	if verCmd>>4 != 2 {
		return nil, fmt.Errorf("unsupported v2 version %d", verCmd>>4)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("reading v2 addresses: %w", err)
	}
	switch verCmd & 0xf {
	case 0: // LOCAL: health checks of the proxy itself
		return nil, nil
	case 1: // PROXY
	default:
		return nil, fmt.Errorf("unsupported v2 command %d", verCmd&0xf)
	}
	switch fam {
	case 0x11: // TCP over IPv4
		if n < 12 {
			return nil, errors.New("short v2 IPv4 addresses")
		}
		ip := netip.AddrFrom4([4]byte(body[0:4]))
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, binary.BigEndian.Uint16(body[8:10]))), nil
	case 0x21: // TCP over IPv6
		if n < 36 {
			return nil, errors.New("short v2 IPv6 addresses")
		}
		ip := netip.AddrFrom16([16]byte(body[0:16]))
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, binary.BigEndian.Uint16(body[32:34]))), nil
	}
	return nil, nil // UNSPEC, UDP or unix: keep the proxy's address
}

// ParsePrefixes parses networks ("10.0.0.0/8") and single addresses.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network or address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
