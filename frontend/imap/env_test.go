package imap

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"mailcluster/backend"
	"mailcluster/backend/store/storetest"
	"mailcluster/directory"
	"mailcluster/internal/testenv"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const testToken = "imap-test-token"

// stack is one test's cluster: PostgreSQL and S3 (fresh database and
// bucket), n backends, a slapd subtree with users, and frontends.
type stack struct {
	t        testing.TB
	backends []*backend.Server
	addrs    []string
	clients  []mailboxv1.MailboxClient
	dir      *directory.Directory
	slapd    *testenv.Slapd
	tree     testenv.Tree
	log      *slog.Logger
}

func testLog() *slog.Logger {
	if os.Getenv("MAILCLUSTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type tokenCreds struct{}

func (tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + testToken}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return false }

func newStack(t testing.TB, nBackends int) *stack {
	t.Helper()
	pg, s3 := testenv.StartPostgres(t), testenv.StartS3(t)
	dsn := storetest.Database(t, pg)
	bucket := s3.BucketName()
	st := &stack{t: t, log: testLog()}
	for i := 0; i < nBackends; i++ {
		cfg := backend.DefaultConfig()
		cfg.QueueWorkers = 0 // no outbound delivery in these tests
		cfg.Listen = "127.0.0.1:0"
		cfg.Token = testToken
		cfg.PostgresDSN, cfg.PostgresMaxConns = dsn, 8
		cfg.BlobDriver = "s3"
		cfg.S3Endpoint, cfg.S3Bucket = s3.Endpoint, bucket
		cfg.S3AccessKey, cfg.S3SecretKey, cfg.S3Region = s3.AccessKey, s3.SecretKey, s3.Region
		cfg.S3CreateBucket = true
		cfg.SweepInterval = time.Hour
		b, err := backend.New(context.Background(), cfg, st.log)
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go b.Serve(l)
		t.Cleanup(func() { b.Close(5 * time.Second) })
		cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(tokenCreds{}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		st.backends = append(st.backends, b)
		st.addrs = append(st.addrs, l.Addr().String())
		st.clients = append(st.clients, mailboxv1.NewMailboxClient(cc))
	}
	st.slapd = testenv.StartSlapd(t)
	st.tree = st.slapd.NewTree(t)
	cfg := directory.DefaultConfig()
	cfg.URLs = []string{st.slapd.URL}
	cfg.BindDN, cfg.BindPassword = testenv.SlapdAdminDN, testenv.SlapdAdminPassword
	cfg.BaseDN = st.tree.BaseDN
	cfg.DialTimeout, cfg.Timeout = 2*time.Second, 5*time.Second
	d, err := directory.New(cfg, st.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	st.dir = d
	return st
}

// user adds an account with password "secret" and returns its id.
func (st *stack) user(uid string) string {
	st.t.Helper()
	st.slapd.AddLDIF(st.t, fmt.Sprintf("dn: uid=%s,%s\nobjectClass: inetOrgPerson\nobjectClass: inetLocalMailRecipient\n"+
		"objectClass: mailclusterAccount\nuid: %s\ncn: %s\nsn: %s\nmail: %s@example.test\nuserPassword: secret\n",
		uid, st.tree.PeopleDN, uid, uid, uid, uid))
	info, err := st.dir.Authenticate(context.Background(), uid, "secret", netipLocal)
	if err != nil {
		st.t.Fatal(err)
	}
	return info.ID
}

// testRouter routes every account to the first backend not marked down.
type testRouter struct {
	clients []mailboxv1.MailboxClient
	mu      sync.Mutex
	down    map[int]bool
	routed  atomic.Int64
}

func (r *testRouter) Route(accountID, mailHost string) (mailboxv1.MailboxClient, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routed.Add(1)
	for i, c := range r.clients {
		if !r.down[i] {
			return c, nil
		}
	}
	return nil, fmt.Errorf("no backend")
}

func (r *testRouter) Unreachable(c mailboxv1.MailboxClient) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, x := range r.clients {
		if x == c {
			r.down[i] = true
		}
	}
}

// frontend starts an IMAP server routing to the given backends (in order
// of preference) and returns its address.
func (st *stack) frontend(mod func(*Config), backends ...int) (*Server, string) {
	st.t.Helper()
	r := &testRouter{down: map[int]bool{}}
	for _, i := range backends {
		r.clients = append(r.clients, st.clients[i])
	}
	cfg := DefaultConfig()
	cfg.InsecureAuth = true
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg, Deps{Auth: st.dir, Router: r}, st.log)
	if err != nil {
		st.t.Fatal(err)
	}
	return srv, serveOn(st.t, srv)
}

// login connects a go-imap client and logs in.
func login(t testing.TB, addr, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, "secret").Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// deliver delivers msg to account's INBOX through backend client c.
func deliver(t testing.TB, c mailboxv1.MailboxClient, account string, msg []byte) {
	t.Helper()
	deliverTo(t, c, &mailboxv1.Recipient{AccountId: account}, msg)
}

// deliverTo delivers msg to one recipient (a mailbox other than INBOX,
// flags) and checks that it was stored.
func deliverTo(t testing.TB, c mailboxv1.MailboxClient, rcpt *mailboxv1.Recipient, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.Deliver(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Header{Header: &mailboxv1.DeliverHeader{
		Recipients: []*mailboxv1.Recipient{rcpt}, TraceId: "test", Size: int64(len(msg))}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Chunk{Chunk: msg}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.Results[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK {
		t.Fatalf("deliver: %v", resp.Results[0])
	}
}

func testMessage(i int) []byte {
	return []byte(fmt.Sprintf("From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: message %d\r\n"+
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <m%d@example.test>\r\n\r\nHello number %d.\r\n", i, i, i))
}

// raw is a line-level IMAP connection for edge cases.
type raw struct {
	t    testing.TB
	conn net.Conn
	buf  []byte
}

func dialRaw(t testing.TB, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &raw{t: t, conn: c}
	r.expect("* OK")
	return r
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.conn, s); err != nil {
		r.t.Fatal(err)
	}
}

// line reads one line (without CRLF).
func (r *raw) line() string {
	r.t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if i := strings.Index(string(r.buf), "\r\n"); i >= 0 {
			l := string(r.buf[:i])
			r.buf = r.buf[i+2:]
			return l
		}
		b := make([]byte, 4096)
		n, err := r.conn.Read(b)
		if err != nil {
			r.t.Fatalf("read: %v (have %q)", err, r.buf)
		}
		r.buf = append(r.buf, b[:n]...)
	}
}

// expect reads lines until one starts with prefix and returns it.
func (r *raw) expect(prefix string) string {
	r.t.Helper()
	for {
		l := r.line()
		if strings.HasPrefix(l, prefix) {
			return l
		}
		if strings.HasPrefix(l, "* BYE") || (!strings.HasPrefix(l, "*") && !strings.HasPrefix(l, "+")) {
			r.t.Fatalf("want %q, got %q", prefix, l)
		}
	}
}

var netipLocal = netip.MustParseAddr("127.0.0.1")

// serveOn serves srv on a fresh loopback listener and closes it at the end.
func serveOn(t testing.TB, srv *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
	return l.Addr().String()
}

// deliverMany delivers testMessage(0..n-1) with 8 concurrent streams.
func deliverMany(t testing.TB, c mailboxv1.MailboxClient, account string, n int) {
	t.Helper()
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				deliver(t, c, account, testMessage(i))
			}
		}()
	}
	wg.Wait()
}

// until reads lines up to and including the tagged response for tag and
// returns them joined with "\n".
func (r *raw) until(tag string) string {
	r.t.Helper()
	var out strings.Builder
	for {
		l := r.line()
		out.WriteString(l + "\n")
		if strings.HasPrefix(l, tag+" ") {
			return out.String()
		}
	}
}

// rawSelected starts a one-backend stack where user has msg in INBOX and
// returns a raw connection logged in with INBOX selected.
func rawSelected(t *testing.T, user string, msg []byte) *raw {
	t.Helper()
	st := newStack(t, 1)
	deliver(t, st.clients[0], st.user(user), msg)
	_, addr := st.frontend(nil, 0)
	r := dialRaw(t, addr)
	r.send("a LOGIN " + user + " secret\r\nb SELECT INBOX\r\n")
	r.expect("a OK")
	r.expect("b OK")
	return r
}
