package outbound_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"mailcluster/backend/outbound"
	"mailcluster/internal/pki"
)

// zone is the test DNS server's data: records by owner name, and owner
// names answered with an error rcode. A name with no records and no rcode
// does not exist (NXDOMAIN); a name with records of other types gets an
// empty answer (NODATA).
type zone struct {
	mu      sync.Mutex
	records map[string][]dns.RR
	rcodes  map[string]int
}

func (z *zone) add(t *testing.T, rrs ...string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad RR %q: %v", s, err)
		}
		name := strings.ToLower(rr.Header().Name)
		z.records[name] = append(z.records[name], rr)
	}
}

func (z *zone) fail(name string, rcode int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.rcodes[dns.Fqdn(strings.ToLower(name))] = rcode
}

func (z *zone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	// Without these Go's resolver takes an empty answer for a lame
	// referral and tries elsewhere.
	m.Authoritative, m.RecursionAvailable = true, true
	if len(r.Question) == 1 {
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		z.mu.Lock()
		rcode, failed := z.rcodes[name]
		rrs, exists := z.records[name]
		switch {
		case failed:
			m.Rcode = rcode
		case !exists:
			m.Rcode = dns.RcodeNameError
		default:
			for _, rr := range rrs {
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, rr)
				}
			}
		}
		z.mu.Unlock()
	}
	w.WriteMsg(m)
}

// startDNS serves z on a random port of 127.0.0.1, UDP and TCP.
func startDNS(t *testing.T, z *zone) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		l, err := net.Listen("tcp", addr)
		if err != nil {
			pc.Close()
			continue
		}
		var started sync.WaitGroup
		started.Add(2)
		udp := &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: started.Done}
		tcp := &dns.Server{Listener: l, Handler: z, NotifyStartedFunc: started.Done}
		go udp.ActivateAndServe()
		go tcp.ActivateAndServe()
		started.Wait()
		t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
		return addr
	}
	t.Fatal("no port free for UDP and TCP")
	return ""
}

// testEnv is a DNS server and listeners on several loopback addresses, all
// on one port, so that Config.Port reaches them all. Every env holds
// 127.0.0.2 on its port, so parallel tests get distinct ports.
type testEnv struct {
	t    *testing.T
	port int
	dns  string
	zone *zone
	lns  map[string]net.Listener
}

// refusedIP has no listener in any test: connections to it are refused.
const refusedIP = "127.0.0.20"

func newEnv(t *testing.T, ips ...string) *testEnv {
	t.Helper()
	t.Parallel()
	z := &zone{records: map[string][]dns.RR{}, rcodes: map[string]int{}}
	e := &testEnv{t: t, zone: z, dns: startDNS(t, z)}
	if len(ips) == 0 || ips[0] != "127.0.0.2" {
		ips = append([]string{"127.0.0.2"}, ips...)
	}
retry:
	for range 20 {
		e.lns = map[string]net.Listener{}
		port := 0
		for _, ip := range ips {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				for _, l := range e.lns {
					l.Close()
				}
				continue retry
			}
			port = l.Addr().(*net.TCPAddr).Port
			e.lns[ip] = l
		}
		e.port = port
		t.Cleanup(func() {
			for _, l := range e.lns {
				l.Close()
			}
		})
		return e
	}
	t.Fatal("no port free on all addresses")
	return nil
}

func (e *testEnv) transport(mod func(*outbound.Config)) *outbound.Transport {
	e.t.Helper()
	cfg := outbound.Config{
		HeloName:       "client.test",
		Resolver:       e.dns,
		Port:           e.port,
		DNSTimeout:     3 * time.Second,
		ConnectTimeout: 2 * time.Second,
		CommandTimeout: 5 * time.Second,
		DataTimeout:    5 * time.Second,
		Log:            slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	tr, err := outbound.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { tr.Close() })
	return tr
}

func (e *testEnv) listener(ip string) net.Listener {
	e.t.Helper()
	l := e.lns[ip]
	if l == nil {
		e.t.Fatalf("no listener on %s", ip)
	}
	return l
}

// received is one message a sink accepted.
type received struct {
	from  string
	opts  smtp.MailOptions
	rcpts []string
	data  []byte
	tls   bool
	user  string
}

// sink is a go-smtp server that records what it receives, with replies and
// delays set by the test before the first connection.
type sink struct {
	srv *smtp.Server

	// Behaviour.
	mailReply   *smtp.SMTPError
	rcptReply   map[string]*smtp.SMTPError
	dataReply   *smtp.SMTPError
	hold        chan struct{} // when set, Data waits until it is closed (at cleanup)
	dataDelay   time.Duration
	closeAtRcpt bool
	implicitTLS *tls.Config       // serve TLS from the start
	users       map[string]string // AUTH PLAIN credentials; MAIL requires AUTH when set
	authReply   *smtp.SMTPError   // reply to every AUTH

	mu       sync.Mutex
	msgs     []received
	accepted int // TCP connections
	open     int
	maxOpen  int
	inData   int
	maxData  int
}

func (e *testEnv) sink(ip string, mod func(*sink)) *sink {
	e.t.Helper()
	k := &sink{rcptReply: map[string]*smtp.SMTPError{}}
	k.srv = smtp.NewServer(k)
	k.srv.Domain = "sink-" + ip
	k.srv.ErrorLog = log.New(io.Discard, "", 0)
	k.srv.ReadTimeout = 10 * time.Second
	k.srv.WriteTimeout = 10 * time.Second
	if mod != nil {
		mod(k)
	}
	var l net.Listener = &countingListener{Listener: e.listener(ip), k: k}
	if k.implicitTLS != nil {
		l = tls.NewListener(l, k.implicitTLS)
	}
	go k.srv.Serve(l)
	e.t.Cleanup(func() {
		if k.hold != nil {
			close(k.hold)
		}
		k.srv.Close()
	})
	return k
}

func (k *sink) messages() []received {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]received(nil), k.msgs...)
}

func (k *sink) connections() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.accepted
}

func (k *sink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &sinkSession{k: k, c: c}, nil
}

type sinkSession struct {
	k    *sink
	c    *smtp.Conn
	user string
	msg  received
}

var _ smtp.AuthSession = (*sinkSession)(nil)

func (s *sinkSession) AuthMechanisms() []string {
	if s.k.users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *sinkSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if s.k.authReply != nil {
			return s.k.authReply
		}
		if p, ok := s.k.users[username]; !ok || p != password || identity != "" && identity != username {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.user = username
		return nil
	}), nil
}

func (s *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	if s.k.users != nil && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	if s.k.mailReply != nil {
		return s.k.mailReply
	}
	s.msg = received{from: from, user: s.user}
	if opts != nil {
		s.msg.opts = *opts
	}
	return nil
}

func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.k.closeAtRcpt {
		s.c.Close()
		return errors.New("closed")
	}
	if r := s.k.rcptReply[to]; r != nil {
		return r
	}
	s.msg.rcpts = append(s.msg.rcpts, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	k := s.k
	k.mu.Lock()
	k.inData++
	k.maxData = max(k.maxData, k.inData)
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.inData--
		k.mu.Unlock()
	}()
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if k.hold != nil {
		<-k.hold
	}
	time.Sleep(k.dataDelay)
	if k.dataReply != nil {
		return k.dataReply
	}
	s.msg.data = data
	_, s.msg.tls = s.c.TLSConnectionState()
	k.mu.Lock()
	k.msgs = append(k.msgs, s.msg)
	k.mu.Unlock()
	return nil
}

func (s *sinkSession) Reset()        { s.msg = received{} }
func (s *sinkSession) Logout() error { return nil }

// countingListener counts the sink's connections.
type countingListener struct {
	net.Listener
	k *sink
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	k := l.k
	k.mu.Lock()
	k.accepted++
	k.open++
	k.maxOpen = max(k.maxOpen, k.open)
	k.mu.Unlock()
	return &countedConn{Conn: c, k: k}, nil
}

type countedConn struct {
	net.Conn
	k    *sink
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.k.mu.Lock()
		c.k.open--
		c.k.mu.Unlock()
	})
	return c.Conn.Close()
}

// raw serves ip with handle, one goroutine per connection, for servers
// go-smtp cannot imitate (a 421 greeting, silence). It returns a counter of
// connections.
func (e *testEnv) raw(ip string, handle func(net.Conn)) func() int {
	e.t.Helper()
	l := e.listener(ip)
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		n     int
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			n++
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	e.t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// greet421 answers every connection with 421 and closes it.
func greet421(c net.Conn) {
	io.WriteString(c, "421 4.3.2 too busy, try later\r\n")
	bufio.NewReader(c).ReadString('\n')
}

// silent accepts connections and never says anything.
func silent(c net.Conn) {
	io.Copy(io.Discard, c)
}

func body(s string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(s)), nil
	}
}

const testMessage = "From: a@sender.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nhello\r\n"

// serverTLS returns a server configuration with a certificate for hosts
// from a new CA, and a pool holding that CA.
func serverTLS(t *testing.T, hosts ...string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	ca, err := pki.NewCA("outbound test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue(hosts[0], hosts...)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pair.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, ca.Pool()
}

// scripted is a minimal SMTP server for what go-smtp's server will not do
// (refuse EHLO, refuse STARTTLS). replies maps a command verb to its reply
// line; other commands get 250, DATA gets 354 and, after the dot, 250. It
// appends the command lines it reads to *log.
func scripted(replies map[string]string, mu *sync.Mutex, log *[]string) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReader(c)
		io.WriteString(c, "220 scripted ESMTP\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			mu.Lock()
			*log = append(*log, line)
			mu.Unlock()
			verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
			reply, ok := replies[verb]
			switch {
			case ok:
			case verb == "EHLO":
				reply = "250-scripted\r\n250 STARTTLS"
			case verb == "DATA":
				io.WriteString(c, "354 go ahead\r\n")
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						break
					}
				}
				reply = "250 2.0.0 queued as scripted"
			case verb == "QUIT":
				io.WriteString(c, "221 bye\r\n")
				return
			default:
				reply = "250 2.0.0 ok"
			}
			io.WriteString(c, reply+"\r\n")
		}
	}
}
