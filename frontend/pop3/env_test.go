package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"mailcluster/backend"
	"mailcluster/backend/store/storetest"
	"mailcluster/directory"
	"mailcluster/frontend/pool"
	"mailcluster/internal/pki"
	"mailcluster/internal/testenv"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const testToken = "pop3-test-token"

// stack is one test's real system: a slapd subtree, a fresh database and
// bucket, backends b1, b2 … (each behind a relay that the test can cut), the
// directory (behind a relay too), the backend pool and a POP3 server with a
// plaintext listener (STLS) and an implicit-TLS listener (995).
type stack struct {
	t       testing.TB
	slapd   *testenv.Slapd
	tree    testenv.Tree
	relays  map[string]*testenv.Relay // "b1", …, "ldap"
	direct  map[string]mailboxv1.MailboxClient
	dir     *directory.Directory
	pool    *pool.Pool
	srv     *Server
	plain   string
	implict string
	roots   *x509.CertPool
	log     *logBuffer
}

type stackOptions struct {
	backends int
	mod      func(*Config)
	listen   string // plaintext listener address ("": a free port)
}

func newStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	if o.backends == 0 {
		o.backends = 1
	}
	pg, s3 := testenv.StartPostgres(t), testenv.StartS3(t)
	s := &stack{t: t, slapd: testenv.StartSlapd(t), relays: map[string]*testenv.Relay{},
		direct: map[string]mailboxv1.MailboxClient{}, log: &logBuffer{}}
	s.tree = s.slapd.NewTree(t)
	dsn := storetest.Database(t, pg)
	bucket := s3.BucketName()
	addrs := map[string]string{}
	for i := 1; i <= o.backends; i++ {
		name := fmt.Sprintf("b%d", i)
		cfg := backend.DefaultConfig()
		cfg.QueueWorkers = 0 // no outbound delivery in these tests
		cfg.Listen = "127.0.0.1:0"
		cfg.Token = testToken
		cfg.PostgresDSN = dsn
		cfg.PostgresMaxConns = 8
		cfg.S3Endpoint, cfg.S3Bucket = s3.Endpoint, bucket
		cfg.S3AccessKey, cfg.S3SecretKey, cfg.S3Region = s3.AccessKey, s3.SecretKey, s3.Region
		cfg.S3CreateBucket = true
		cfg.S3Timeout = 5 * time.Second
		cfg.SweepInterval = time.Hour
		b, err := backend.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go b.Serve(l)
		t.Cleanup(func() { b.Close(2 * time.Second) })
		s.relays[name] = testenv.NewRelay(t, l.Addr().String())
		addrs[name] = s.relays[name].Addr
		s.direct[name] = directClient(t, l.Addr().String())
	}
	p, err := pool.New(context.Background(), pool.Config{Backends: addrs, Token: testToken,
		HealthInterval: 100 * time.Millisecond, HealthTimeout: time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	s.pool = p
	deadline := time.Now().Add(20 * time.Second)
	for _, name := range p.Names() {
		for !p.Backend(name).Healthy() {
			if time.Now().After(deadline) {
				t.Fatalf("backend %s not healthy", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	s.relays["ldap"] = testenv.NewRelay(t, s.slapd.Addr)
	d := directory.DefaultConfig()
	d.URLs = []string{"ldap://" + s.relays["ldap"].Addr + "/"}
	d.BindDN, d.BindPassword = testenv.SlapdAdminDN, testenv.SlapdAdminPassword
	d.BaseDN = s.tree.BaseDN
	d.DialTimeout, d.Timeout = 2*time.Second, 3*time.Second
	d.AuthDelayBase, d.AuthDelayMax, d.AuthFailFree = 10*time.Millisecond, 50*time.Millisecond, 100
	d.StaleTTL = 0
	d.DownFor = 100 * time.Millisecond
	dir, err := directory.New(d, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	s.dir = dir

	ca, err := pki.NewCA("pop3 test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue("pop.example.test", "pop.example.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pair.TLS()
	if err != nil {
		t.Fatal(err)
	}
	s.roots = ca.Pool()
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}

	cfg := DefaultConfig()
	cfg.Hostname = "pop.example.test"
	cfg.TLS = tlsCfg
	cfg.AuthFailureDelay = 100 * time.Millisecond
	cfg.BackendTimeout = 5 * time.Second
	if o.mod != nil {
		o.mod(&cfg)
	}
	var h slog.Handler = slog.NewTextHandler(s.log, &slog.HandlerOptions{Level: slog.LevelDebug})
	if os.Getenv("MAILCLUSTER_TEST_LOG") != "" {
		h = slog.NewTextHandler(io.MultiWriter(os.Stderr, s.log), &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	s.srv = NewServer(cfg, dir, p, slog.New(h))
	if o.listen == "" {
		o.listen = "127.0.0.1:0"
	}
	plain, err := net.Listen("tcp", o.listen)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.plain, s.implict = plain.Addr().String(), inner.Addr().String()
	go s.srv.Serve(plain)
	go s.srv.Serve(tls.NewListener(inner, tlsCfg))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.srv.Shutdown(ctx)
	})
	return s
}

type tokenCreds struct{}

func (tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + testToken}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return false }

func directClient(t testing.TB, addr string) mailboxv1.MailboxClient {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(tokenCreds{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return mailboxv1.NewMailboxClient(cc)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// user adds an account uid@example.test with password "secret" (extra: more
// LDIF lines) and returns its account id.
func (s *stack) user(uid string, extra ...string) string {
	s.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "dn: uid=%s,%s\nobjectClass: inetOrgPerson\nobjectClass: inetLocalMailRecipient\n"+
		"objectClass: mailclusterAccount\nuid: %s\ncn: %s\nsn: %s\nmail: %s@example.test\nuserPassword: secret\n",
		uid, s.tree.PeopleDN, uid, uid, uid, uid)
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	s.slapd.AddLDIF(s.t, b.String())
	r, err := s.dir.Resolve(ctxT(s.t), uid+"@example.test")
	if err != nil || r.Account.ID == "" {
		s.t.Fatalf("resolve %s: %+v %v", uid, r, err)
	}
	return r.Account.ID
}

// deliver stores messages in the account's INBOX, in order, through b1.
func (s *stack) deliver(account string, msgs ...string) {
	s.t.Helper()
	for _, m := range msgs {
		st, err := s.direct["b1"].Deliver(ctxT(s.t))
		if err != nil {
			s.t.Fatal(err)
		}
		st.Send(&mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Header{Header: &mailboxv1.DeliverHeader{
			Recipients: []*mailboxv1.Recipient{{AccountId: account}}, TraceId: "pop3-test", Size: int64(len(m))}}})
		for off := 0; off < len(m); off += 64 << 10 {
			st.Send(&mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Chunk{Chunk: []byte(m[off:min(off+64<<10, len(m))])}})
		}
		resp, err := st.CloseAndRecv()
		if err != nil || resp.Results[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK {
			s.t.Fatalf("deliver: %v %v", resp, err)
		}
	}
}

// inbox returns the INBOX's messages (uid, size, flags) as the backend has
// them.
func (s *stack) inbox(account string) []*mailboxv1.MessageMeta {
	s.t.Helper()
	c := s.direct["b1"]
	sel, err := c.Select(ctxT(s.t), &mailboxv1.SelectRequest{AccountId: account, Name: "INBOX"})
	if err != nil {
		s.t.Fatal(err)
	}
	if len(sel.Uids.GetRanges()) == 0 {
		return nil
	}
	st, err := c.Fetch(ctxT(s.t), &mailboxv1.FetchRequest{AccountId: account, MailboxId: sel.Status.MailboxId, Uids: sel.Uids, InternalDate: true})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []*mailboxv1.MessageMeta
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, r.Messages...)
	}
}

// logBuffer collects the server's log.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// client is a POP3 client over a real socket that checks every line it
// reads for internal error text.
type client struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func (s *stack) dial() *client {
	s.t.Helper()
	c, err := net.Dial("tcp", s.plain)
	if err != nil {
		s.t.Fatal(err)
	}
	return newClient(s.t, c)
}

func (s *stack) dialTLS() *client {
	s.t.Helper()
	c, err := tls.Dial("tcp", s.implict, &tls.Config{RootCAs: s.roots, ServerName: "pop.example.test"})
	if err != nil {
		s.t.Fatal(err)
	}
	return newClient(s.t, c)
}

func newClient(t testing.TB, c net.Conn) *client {
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	if g := cl.line(); !strings.HasPrefix(g, "+OK pop.example.test POP3 ready") {
		t.Fatalf("greeting %q", g)
	}
	return cl
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, line+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line without CRLF: %q", l)
	}
	for _, bad := range []string{"rpc error", "desc =", "ldap", "LDAP", "127.0.0.1", "connection refused"} {
		if strings.Contains(l, bad) {
			c.t.Fatalf("internal detail %q in %q", bad, l)
		}
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns the first line of the response.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.line()
}

// expect sends a command and checks that the first response line starts
// with prefix.
func (c *client) expect(line, prefix string) string {
	c.t.Helper()
	got := c.cmd(line)
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("%s: got %q, want %q…", line, got, prefix)
	}
	return got
}

// body reads the rest of a multi-line response and undoes the
// dot-stuffing; it returns the bytes exactly as the client receives them.
func (c *client) body() []byte {
	c.t.Helper()
	var out []byte
	for {
		c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		l, err := c.r.ReadBytes('\n')
		if err != nil {
			c.t.Fatalf("read body: %v", err)
		}
		if string(l) == ".\r\n" {
			return out
		}
		if l[0] == '.' {
			l = l[1:]
		}
		out = append(out, l...)
	}
}

// lines reads a multi-line response as lines.
func (c *client) lines() []string {
	c.t.Helper()
	b := c.body()
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\r\n"), "\r\n")
}

// closed checks that the server closes the connection.
func (c *client) closed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if l, err := c.r.ReadString('\n'); err == nil {
		c.t.Fatalf("connection still open, read %q", l)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatal("connection not closed")
	}
}

// stls upgrades the connection.
func (c *client) stls(roots *x509.CertPool) {
	c.t.Helper()
	c.expect("STLS", "+OK")
	tc := tls.Client(c.c, &tls.Config{RootCAs: roots, ServerName: "pop.example.test"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.c, c.r = tc, bufio.NewReader(tc)
}

// login upgrades with STLS (plaintext listener) and logs in with USER/PASS.
func (s *stack) login(uid string) *client {
	s.t.Helper()
	c := s.dial()
	c.stls(s.roots)
	c.expect("USER "+uid, "+OK")
	c.expect("PASS secret", "+OK Logged in")
	return c
}

// capa returns the capabilities.
func (c *client) capa() []string {
	c.t.Helper()
	c.expect("CAPA", "+OK")
	return c.lines()
}

// msg builds a message with a subject and body lines joined by CRLF.
func msg(subject string, body ...string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: a@example.test\r\nTo: b@example.test\r\nSubject: %s\r\nMessage-ID: <%s@example.test>\r\n\r\n", subject, strings.ReplaceAll(subject, " ", "."))
	for _, l := range body {
		b.WriteString(l + "\r\n")
	}
	return b.String()
}
