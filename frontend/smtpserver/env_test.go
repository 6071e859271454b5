package smtpserver_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"mailcluster/backend"
	"mailcluster/backend/store"
	"mailcluster/backend/store/storetest"
	"mailcluster/directory"
	"mailcluster/frontend"
	"mailcluster/internal/pki"
	"mailcluster/internal/testenv"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	testToken = "frontend-test-token"
	domain    = "example.test"
)

// cluster is one test's system: slapd subtree, a fresh database and bucket,
// backends named b1, b2, … and a frontend in front of them.
type cluster struct {
	t        testing.TB
	pg       *testenv.Postgres
	s3       *testenv.S3
	slapd    *testenv.Slapd
	tree     testenv.Tree
	dsn      string
	bucket   string
	backends map[string]*backend.Server
	bAddrs   map[string]string
	relays   map[string]*testenv.Relay // in front of each backend
	fe       *frontend.Server
	feCfg    frontend.Config
	ca       *pki.CA
	certDir  string
	dir      *directory.Directory
	log      *logBuffer
	mu       sync.Mutex
	replies  []string // every reply any test client read
}

type options struct {
	backends int
	s3Relay  *testenv.Relay // set by the option: S3 through a relay
	useS3Rly bool
	ldapRly  bool
	mod      func(*frontend.Config)
}

// newCluster starts the stack. Backends are reached through relays so that
// a test can cut them.
func newCluster(t *testing.T, o options) *cluster {
	t.Helper()
	if o.backends == 0 {
		o.backends = 2
	}
	c := &cluster{t: t, pg: testenv.StartPostgres(t), s3: testenv.StartS3(t), slapd: testenv.StartSlapd(t),
		backends: map[string]*backend.Server{}, bAddrs: map[string]string{}, relays: map[string]*testenv.Relay{},
		log: &logBuffer{}}
	c.tree = c.slapd.NewTree(t)
	c.dsn = storetest.Database(t, c.pg)
	c.bucket = c.s3.BucketName()
	s3Endpoint := c.s3.Endpoint
	if o.useS3Rly {
		r := testenv.NewRelay(t, c.s3.Endpoint)
		s3Endpoint = r.Addr
		c.relays["s3"] = r
	}
	for i := 1; i <= o.backends; i++ {
		name := fmt.Sprintf("b%d", i)
		cfg := backend.DefaultConfig()
		cfg.QueueWorkers = 0 // no outbound delivery in these tests
		cfg.Listen = "127.0.0.1:0"
		cfg.Token = testToken
		cfg.PostgresDSN = c.dsn
		cfg.PostgresMaxConns = 8
		cfg.S3Endpoint, cfg.S3Bucket = s3Endpoint, c.bucket
		cfg.S3AccessKey, cfg.S3SecretKey, cfg.S3Region = c.s3.AccessKey, c.s3.SecretKey, c.s3.Region
		cfg.S3CreateBucket = true
		cfg.S3Timeout = 5 * time.Second
		cfg.SweepInterval = time.Hour
		c.startBackend(name, cfg)
	}
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	c.ca = ca
	c.certDir = t.TempDir()
	c.issueCert()

	ldapURL := c.slapd.URL
	if o.ldapRly {
		r := testenv.NewRelay(t, c.slapd.Addr)
		ldapURL = "ldap://" + r.Addr + "/"
		c.relays["ldap"] = r
	}
	cfg := frontend.DefaultConfig()
	cfg.Hostname = "mx.example.test"
	cfg.SMTPListen, cfg.SubmissionListen, cfg.SubmissionsListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.IMAPListen, cfg.IMAPSListen, cfg.POP3Listen, cfg.POP3SListen = "", "127.0.0.1:0", "", "127.0.0.1:0"
	cfg.TLSCert, cfg.TLSKey = filepath.Join(c.certDir, "fe.crt"), filepath.Join(c.certDir, "fe.key")
	cfg.BackendToken = testToken
	cfg.BackendTimeout = 10 * time.Second
	cfg.BackendHealth = 200 * time.Millisecond
	for name := range c.bAddrs {
		cfg.Backends = append(cfg.Backends, name+"="+c.relays[name].Addr)
	}
	cfg.SMTP.DataTimeout = 5 * time.Second
	cfg.SMTP.IdleTimeout = 10 * time.Second
	d := directory.DefaultConfig()
	d.URLs = []string{ldapURL}
	d.BindDN, d.BindPassword = testenv.SlapdAdminDN, testenv.SlapdAdminPassword
	d.BaseDN = c.tree.BaseDN
	d.LocalDomains = []string{domain}
	d.DialTimeout, d.Timeout = 2*time.Second, 3*time.Second
	d.AuthDelayBase, d.AuthDelayMax, d.AuthFailFree = 50*time.Millisecond, 400*time.Millisecond, 100
	d.StaleTTL = 0
	cfg.Directory = d
	if o.mod != nil {
		o.mod(&cfg)
	}
	c.feCfg = cfg
	c.startFrontend()
	dir, err := directory.New(d, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	c.dir = dir
	return c
}

func (c *cluster) issueCert() {
	pair, err := c.ca.Issue("mx.example.test", "mx.example.test", "127.0.0.1")
	if err != nil {
		c.t.Fatal(err)
	}
	if _, _, err := pair.WriteFiles(c.certDir, "fe"); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) startBackend(name string, cfg backend.Config) {
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("MAILCLUSTER_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("backend", name)
	}
	s, err := backend.New(context.Background(), cfg, log)
	if err != nil {
		c.t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	go s.Serve(l)
	c.t.Cleanup(func() { s.Close(2 * time.Second) })
	c.backends[name] = s
	c.bAddrs[name] = l.Addr().String()
	if c.relays[name] == nil {
		c.relays[name] = testenv.NewRelay(c.t, l.Addr().String())
	}
}

func (c *cluster) startFrontend() {
	var h slog.Handler = slog.NewTextHandler(c.log, &slog.HandlerOptions{Level: slog.LevelDebug})
	if os.Getenv("MAILCLUSTER_TEST_LOG") != "" {
		h = slog.NewTextHandler(io.MultiWriter(os.Stderr, c.log), &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	fe, err := frontend.New(context.Background(), c.feCfg, slog.New(h))
	if err != nil {
		c.t.Fatal(err)
	}
	fe.Serve()
	c.t.Cleanup(func() { fe.Close() })
	c.fe = fe
	// Backends report SERVING after their first dependency check.
	deadline := time.Now().Add(20 * time.Second)
	for _, name := range fe.Pool.Names() {
		for !fe.Pool.Backend(name).Healthy() {
			if time.Now().After(deadline) {
				c.t.Fatalf("backend %s not healthy", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// logBuffer collects the frontend's log for assertions.
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

// user adds an account (password "secret") on backend host; extra are LDIF
// lines.
func (c *cluster) user(uid, host string, extra ...string) string {
	c.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "dn: uid=%s,%s\nobjectClass: inetOrgPerson\nobjectClass: inetLocalMailRecipient\n"+
		"objectClass: mailclusterAccount\nuid: %s\ncn: %s\nsn: %s\nmail: %s@%s\nuserPassword: secret\n",
		uid, c.tree.PeopleDN, uid, uid, uid, uid, domain)
	if host != "" {
		fmt.Fprintf(&b, "mailHost: %s\n", host)
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	c.slapd.AddLDIF(c.t, b.String())
	return uid + "@" + domain
}

// list adds a distribution list with member uids.
func (c *cluster) list(cn string, uids ...string) string {
	c.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "dn: cn=%s,%s\nobjectClass: groupOfNames\nobjectClass: inetLocalMailRecipient\nobjectClass: mailclusterList\ncn: %s\nmail: %s@%s\n",
		cn, c.tree.ListsDN, cn, cn, domain)
	for _, u := range uids {
		fmt.Fprintf(&b, "member: uid=%s,%s\n", u, c.tree.PeopleDN)
	}
	c.slapd.AddLDIF(c.t, b.String())
	return cn + "@" + domain
}

func (c *cluster) accountID(addr string) string {
	c.t.Helper()
	r, err := c.dir.Resolve(context.Background(), addr)
	if err != nil || r.Account.ID == "" {
		c.t.Fatalf("resolve %s: %v %+v", addr, err, r)
	}
	return r.Account.ID
}

// queued returns the outbound queue's entries with their waiting
// recipients, read from PostgreSQL directly.
func (c *cluster) queued() []*store.QueueDetail {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{DSN: c.dsn, MaxConns: 2})
	if err != nil {
		c.t.Fatal(err)
	}
	defer st.Close()
	list, err := st.QueueList(ctx, 1000)
	if err != nil {
		c.t.Fatal(err)
	}
	var out []*store.QueueDetail
	for _, q := range list {
		d, err := st.QueueShow(ctx, q.ID)
		if err != nil {
			c.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// client returns a backend client that bypasses the frontend.
func (c *cluster) client() mailboxv1.MailboxClient {
	for _, addr := range c.bAddrs {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(tokenCreds{}))
		if err != nil {
			c.t.Fatal(err)
		}
		c.t.Cleanup(func() { cc.Close() })
		return mailboxv1.NewMailboxClient(cc)
	}
	c.t.Fatal("no backend")
	return nil
}

type tokenCreds struct{}

func (tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + testToken}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return false }

// inbox returns the bodies of the messages in an address's INBOX, in UID
// order.
func (c *cluster) inbox(addr string) [][]byte {
	c.t.Helper()
	id := c.accountID(addr)
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sel, err := cl.Select(ctx, &mailboxv1.SelectRequest{AccountId: id, Name: "INBOX"})
	if err != nil {
		c.t.Fatalf("select: %v", err)
	}
	st, err := cl.Fetch(ctx, &mailboxv1.FetchRequest{AccountId: id, MailboxId: sel.Status.MailboxId,
		Uids: &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: 1, End: 0}}}})
	if err != nil {
		c.t.Fatal(err)
	}
	var uids []uint32
	for {
		r, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			if sel.Status.Messages == 0 {
				return nil
			}
			c.t.Fatalf("fetch: %v", err)
		}
		for _, m := range r.Messages {
			uids = append(uids, m.Uid)
		}
	}
	var out [][]byte
	for _, uid := range uids {
		bs, err := cl.GetBody(ctx, &mailboxv1.GetBodyRequest{AccountId: id, MailboxId: sel.Status.MailboxId, Uid: uid})
		if err != nil {
			c.t.Fatal(err)
		}
		var body []byte
		for {
			ch, err := bs.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				c.t.Fatalf("body: %v", err)
			}
			body = append(body, ch.Data...)
		}
		out = append(out, body)
	}
	return out
}

// stripReceived removes the frontend's Received header (the first header
// field, with its continuation lines) and returns it and the rest.
func stripReceived(t testing.TB, msg []byte) (string, []byte) {
	t.Helper()
	s := string(msg)
	if !strings.HasPrefix(s, "Received: from ") {
		t.Fatalf("stored message does not start with Received: %q", s[:min(len(s), 80)])
	}
	end := 0
	for {
		i := strings.Index(s[end:], "\r\n")
		if i < 0 {
			t.Fatal("unterminated Received header")
		}
		end += i + 2
		if end >= len(s) || (s[end] != ' ' && s[end] != '\t') {
			break
		}
	}
	return s[:end], msg[end:]
}

// conn is a raw SMTP client over a real socket, for exact replies.
type conn struct {
	t  testing.TB
	cl *cluster
	c  net.Conn
	r  *bufio.Reader
	tc *tls.Conn
}

func (c *cluster) dial(listener string) *conn {
	c.t.Helper()
	cn := c.dialRaw(listener, "")
	if listener == frontend.ListenerSubmissions {
		tc := tls.Client(cn.c, c.tlsConfig())
		cn.c, cn.r, cn.tc = tc, bufio.NewReader(tc), tc
	}
	cn.expect("220 ")
	return cn
}

// dialTLS connects to an implicit-TLS listener of any protocol; replies
// are read line by line.
func (c *cluster) dialTLS(listener string) *conn {
	c.t.Helper()
	cn := c.dialRaw(listener, "")
	tc := tls.Client(cn.c, c.tlsConfig())
	cn.c, cn.r, cn.tc = tc, bufio.NewReader(tc), tc
	return cn
}

// dialRaw connects and sends first (a PROXY header) without reading.
func (c *cluster) dialRaw(listener, first string) *conn {
	c.t.Helper()
	nc, err := net.Dial("tcp", c.fe.Addr(listener).String())
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { nc.Close() })
	cn := &conn{t: c.t, cl: c, c: nc, r: bufio.NewReader(nc)}
	if first != "" {
		cn.send(first)
	}
	return cn
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func (c *cluster) tlsConfig() *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(c.ca.Cert)
	return &tls.Config{RootCAs: roots, ServerName: "mx.example.test"}
}

// starttls upgrades the connection (after EHLO).
func (cn *conn) starttls(cfg *tls.Config) {
	cn.t.Helper()
	cn.cmd("STARTTLS", "220 ")
	tc := tls.Client(cn.c, cfg)
	if err := tc.Handshake(); err != nil {
		cn.t.Fatal(err)
	}
	cn.c, cn.r, cn.tc = tc, bufio.NewReader(tc), tc
}

func (cn *conn) send(s string) {
	cn.t.Helper()
	cn.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(cn.c, s); err != nil {
		cn.t.Fatalf("send: %v", err)
	}
}

// reply reads one (possibly multi-line) reply.
func (cn *conn) reply() string {
	cn.t.Helper()
	r := cn.readReply()
	cn.cl.mu.Lock()
	cn.cl.replies = append(cn.cl.replies, r)
	cn.cl.mu.Unlock()
	return r
}

func (cn *conn) readReply() string {
	cn.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var all strings.Builder
	for {
		line, err := cn.r.ReadString('\n')
		all.WriteString(line)
		if err != nil {
			if all.Len() == 0 {
				return "EOF"
			}
			return all.String()
		}
		if len(line) < 4 || line[3] != '-' {
			return all.String()
		}
	}
}

func (cn *conn) expect(prefix string) string {
	cn.t.Helper()
	r := cn.reply()
	if !strings.HasPrefix(r, prefix) {
		cn.t.Fatalf("reply %q, want %q", r, prefix)
	}
	return r
}

func (cn *conn) cmd(line, prefix string) string {
	cn.t.Helper()
	cn.send(line + "\r\n")
	return cn.expect(prefix)
}

// untilTag reads lines until one starts with prefix (an IMAP tagged
// response) and returns them all.
func (cn *conn) untilTag(prefix string) string {
	cn.t.Helper()
	var all strings.Builder
	for {
		cn.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, err := cn.r.ReadString('\n')
		all.WriteString(line)
		if err != nil {
			cn.t.Fatalf("waiting for %q: %v after %q", prefix, err, all.String())
		}
		if strings.HasPrefix(line, prefix) {
			return all.String()
		}
	}
}

// closed reports whether the server closed the connection.
func (cn *conn) closed() bool {
	cn.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := cn.r.ReadByte()
	return err != nil
}

// mustSend sends a message from sender@remote.test to one recipient and
// expects it stored.
func (cn *conn) mustSend(to, msg string) {
	cn.t.Helper()
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+to+">", "250 ")
	if r := cn.data(msg); !strings.HasPrefix(r, "250 ") {
		cn.t.Fatalf("DATA: %q", r)
	}
}

// data sends DATA and a message (dot-stuffed here) and returns the reply.
func (cn *conn) data(msg string) string {
	cn.t.Helper()
	cn.cmd("DATA", "354 ")
	cn.send(dotStuff(msg) + ".\r\n")
	return cn.reply()
}

func dotStuff(msg string) string {
	if strings.HasPrefix(msg, ".") {
		msg = "." + msg
	}
	return strings.ReplaceAll(msg, "\r\n.", "\r\n..")
}

// message returns a test message with a unique Message-ID and body.
func message(subject string, body string) string {
	return "From: Sender <sender@remote.test>\r\nTo: someone@example.test\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@remote.test>\r\nDate: Wed, 25 Nov 2026 16:00:00 +0000\r\n\r\n" + body
}
