package testenv

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// DNS is an authoritative DNS server on loopback (UDP and TCP on one port)
// answering from records the test sets, for outbound delivery tests.
type DNS struct {
	Addr string // host:port for the resolver setting

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	rcodes  map[string]int      // forced response codes (NXDOMAIN, SERVFAIL)
}

// StartDNS starts a DNS server; it stops when the test ends.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	d := &DNS{records: map[string][]dns.RR{}, rcodes: map[string]int{}}
	var pc net.PacketConn
	var l net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if attempt > 20 {
			t.Fatal(err)
		}
	}
	d.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(d.serve)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: l, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return d
}

// Add adds records in zone-file syntax, e.g. "example.test. MX 10 mx1.example.test.".
func (d *DNS) Add(t testing.TB, records ...string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatalf("DNS record %q: %v", r, err)
		}
		name := strings.ToLower(rr.Header().Name)
		d.records[name] = append(d.records[name], rr)
	}
}

// SetRcode makes every question for name answer with rcode (e.g.
// dns.RcodeServerFailure, dns.RcodeNameError).
func (d *DNS) SetRcode(name string, rcode int) {
	d.mu.Lock()
	d.rcodes[strings.ToLower(dns.Fqdn(name))] = rcode
	d.mu.Unlock()
}

func (d *DNS) serve(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	d.mu.Lock()
	for _, question := range q.Question {
		name := strings.ToLower(question.Name)
		if rc, ok := d.rcodes[name]; ok {
			m.Rcode = rc
			continue
		}
		rrs, exists := d.records[name]
		if !exists {
			m.Rcode = dns.RcodeNameError
			continue
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == question.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	d.mu.Unlock()
	w.WriteMsg(m)
}

// SinkMessage is one message a Sink accepted.
type SinkMessage struct {
	From       string
	Recipients []string
	Data       []byte
	TLS        bool
	At         time.Time
}

// Sink is an SMTP server on loopback that records what it accepts. Its
// hooks decide the replies; nil hooks accept everything.
type Sink struct {
	Addr string
	// Rcpt returns the reply to RCPT TO (nil: 250).
	Rcpt func(to string) error
	// Data returns the reply at the end of DATA (nil: 250), after the
	// message was read; it may block to simulate a slow server.
	Data func(m *SinkMessage) error

	mu       sync.Mutex
	messages []SinkMessage
	conns    int
	srv      *smtp.Server
}

// StartSink starts an SMTP sink on addr ("127.0.0.1:0", or a fixed loopback
// address and port); it stops when the test ends. Set its hooks before mail
// arrives.
func StartSink(t testing.TB, addr string) *Sink {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Sink{Addr: l.Addr().String()}
	s.srv = smtp.NewServer(sinkBackend{s})
	s.srv.Domain = "sink.test"
	s.srv.AllowInsecureAuth = true
	s.srv.MaxMessageBytes = 100 << 20
	s.srv.MaxRecipients = 10000
	s.srv.ReadTimeout, s.srv.WriteTimeout = time.Minute, time.Minute
	go s.srv.Serve(l)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// Messages returns the accepted messages so far.
func (s *Sink) Messages() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkMessage(nil), s.messages...)
}

// Connections returns how many connections the sink has accepted.
func (s *Sink) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// WaitMessages waits until the sink has accepted at least n messages.
func (s *Sink) WaitMessages(t testing.TB, n int, timeout time.Duration) []SinkMessage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := s.Messages()
		if len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink %s has %d messages after %v, want %d", s.Addr, len(m), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type sinkBackend struct{ s *Sink }

func (b sinkBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.s.mu.Lock()
	b.s.conns++
	b.s.mu.Unlock()
	return &sinkSession{s: b.s, c: c}, nil
}

type sinkSession struct {
	s *Sink
	c *smtp.Conn
	m SinkMessage
}

func (ss *sinkSession) Reset()        { ss.m = SinkMessage{} }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.m = SinkMessage{From: from}
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.s.Rcpt != nil {
		if err := ss.s.Rcpt(to); err != nil {
			return err
		}
	}
	ss.m.Recipients = append(ss.m.Recipients, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
	}
	m := ss.m
	m.Data = buf.Bytes()
	_, m.TLS = ss.c.TLSConnectionState()
	m.At = time.Now()
	if ss.s.Data != nil {
		if err := ss.s.Data(&m); err != nil {
			return err
		}
	}
	ss.s.mu.Lock()
	ss.s.messages = append(ss.s.messages, m)
	ss.s.mu.Unlock()
	return nil
}

// SMTPError builds a reply for the sink's hooks, e.g. SMTPError(550, "5.1.1 no such user").
func SMTPError(code int, text string) error {
	e := &smtp.SMTPError{Code: code, Message: text}
	var a, b, c int
	if n, _ := enhancedPrefix(text, &a, &b, &c); n == 3 {
		e.EnhancedCode = smtp.EnhancedCode{a, b, c}
		e.Message = strings.TrimSpace(text[strings.IndexByte(text, ' ')+1:])
	} else {
		e.EnhancedCode = smtp.NoEnhancedCode
	}
	return e
}

// enhancedPrefix reads "x.y.z" at the start of s.
func enhancedPrefix(s string, a, b, c *int) (int, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, errors.New("empty")
	}
	p := strings.Split(f[0], ".")
	if len(p) != 3 {
		return 0, errors.New("not an enhanced code")
	}
	out := []*int{a, b, c}
	for i, x := range p {
		n := 0
		for _, ch := range x {
			if ch < '0' || ch > '9' {
				return i, errors.New("not a number")
			}
			n = n*10 + int(ch-'0')
		}
		*out[i] = n
	}
	return 3, nil
}
