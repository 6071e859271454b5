package backend

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"mailcluster/backend/store/storetest"
	"mailcluster/internal/testenv"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const testToken = "test-token"

// env is one test's stack: a fresh database and bucket, and backends on
// them.
type env struct {
	t        testing.TB
	pg       *testenv.Postgres
	dsn      string
	s3       *testenv.S3
	bucket   string
	backends []*Server
	addrs    []string
}

func testConfig(e *env) Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Token = testToken
	cfg.PostgresDSN = e.dsn
	cfg.PostgresMaxConns = 8
	cfg.BlobDriver = "s3"
	cfg.S3Endpoint, cfg.S3Bucket = e.s3.Endpoint, e.bucket
	cfg.S3AccessKey, cfg.S3SecretKey, cfg.S3Region = e.s3.AccessKey, e.s3.SecretKey, e.s3.Region
	cfg.S3CreateBucket = true
	cfg.SweepInterval = time.Hour // tests sweep explicitly
	cfg.QueueWorkers = 0          // queue tests turn delivery on
	if os.Getenv("MAILCLUSTER_TEST_BLOB") == "fs" {
		// For comparing drivers in benchmarks.
		cfg.BlobDriver, cfg.BlobFSRoot = "fs", e.t.TempDir()
	}
	return cfg
}

// newEnv starts n backends sharing one fresh database and bucket. mod may
// adjust the configuration.
func newEnv(t *testing.T, n int, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, pg: testenv.StartPostgres(t), s3: testenv.StartS3(t)}
	e.dsn = storetest.Database(t, e.pg)
	e.bucket = e.s3.BucketName()
	for i := 0; i < n; i++ {
		cfg := testConfig(e)
		if mod != nil {
			mod(&cfg)
		}
		e.start(cfg)
	}
	return e
}

func (e *env) start(cfg Config) *Server {
	t := e.t
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("MAILCLUSTER_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close(5 * time.Second) })
	e.backends = append(e.backends, s)
	e.addrs = append(e.addrs, l.Addr().String())
	return s
}

type tokenCreds struct{ token string }

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + c.token}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return false }

// client returns a client of backend i that sends the test token.
func (e *env) client(i int) mailboxv1.MailboxClient {
	return e.clientWith(i, testToken)
}

func (e *env) clientWith(i int, token string) mailboxv1.MailboxClient {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds{token}))
	}
	cc, err := grpc.NewClient(e.addrs[i], opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return mailboxv1.NewMailboxClient(cc)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// deliver streams msg to the recipients in chunks of chunk bytes.
func deliver(t *testing.T, c mailboxv1.MailboxClient, msg []byte, rcpts ...*mailboxv1.Recipient) (*mailboxv1.DeliverResponse, error) {
	t.Helper()
	st, err := c.Deliver(ctxT(t))
	if err != nil {
		return nil, err
	}
	if err := st.Send(&mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Header{Header: &mailboxv1.DeliverHeader{
		Recipients: rcpts, TraceId: "test", Size: int64(len(msg))}}}); err != nil {
		return nil, err
	}
	for off := 0; off < len(msg); off += 32 << 10 {
		end := min(off+32<<10, len(msg))
		if err := st.Send(&mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Chunk{Chunk: msg[off:end]}}); err != nil {
			break // the server closed the stream; CloseAndRecv has its error
		}
	}
	return st.CloseAndRecv()
}

func rcpt(account string) *mailboxv1.Recipient { return &mailboxv1.Recipient{AccountId: account} }

// mustDeliver delivers msg to accounts' INBOXes and checks every status.
func mustDeliver(t *testing.T, c mailboxv1.MailboxClient, msg []byte, accounts ...string) []*mailboxv1.RecipientResult {
	t.Helper()
	var rs []*mailboxv1.Recipient
	for _, a := range accounts {
		rs = append(rs, rcpt(a))
	}
	resp, err := deliver(t, c, msg, rs...)
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	for i, r := range resp.Results {
		if r.Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK {
			t.Fatalf("recipient %d: %v %s", i, r.Status, r.Detail)
		}
	}
	return resp.Results
}

func appendMsg(t *testing.T, c mailboxv1.MailboxClient, h *mailboxv1.AppendHeader, msg []byte) (*mailboxv1.AppendResponse, error) {
	t.Helper()
	st, err := c.Append(ctxT(t))
	if err != nil {
		return nil, err
	}
	if h.Size == 0 {
		h.Size = int64(len(msg))
	}
	if err := st.Send(&mailboxv1.AppendRequest{Part: &mailboxv1.AppendRequest_Header{Header: h}}); err != nil {
		return nil, err
	}
	for off := 0; off < len(msg); off += 32 << 10 {
		end := min(off+32<<10, len(msg))
		if err := st.Send(&mailboxv1.AppendRequest{Part: &mailboxv1.AppendRequest_Chunk{Chunk: msg[off:end]}}); err != nil {
			break
		}
	}
	return st.CloseAndRecv()
}

func selectBox(t *testing.T, c mailboxv1.MailboxClient, account, name string) *mailboxv1.SelectResponse {
	t.Helper()
	r, err := c.Select(ctxT(t), &mailboxv1.SelectRequest{AccountId: account, Name: name})
	if err != nil {
		t.Fatalf("select %s: %v", name, err)
	}
	return r
}

// fetchAll returns the metadata of every message in a mailbox.
func fetchAll(t *testing.T, c mailboxv1.MailboxClient, account string, mailboxID int64, full bool) []*mailboxv1.MessageMeta {
	t.Helper()
	st, err := c.Fetch(ctxT(t), &mailboxv1.FetchRequest{AccountId: account, MailboxId: mailboxID,
		Envelope: full, BodyStructure: full, Header: full, InternalDate: true})
	if err != nil {
		t.Fatal(err)
	}
	var out []*mailboxv1.MessageMeta
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		out = append(out, r.Messages...)
	}
}

// body reads a body section.
func body(t *testing.T, c mailboxv1.MailboxClient, req *mailboxv1.GetBodyRequest) ([]byte, *mailboxv1.BodyChunk, error) {
	t.Helper()
	st, err := c.GetBody(ctxT(t), req)
	if err != nil {
		return nil, nil, err
	}
	var out []byte
	var first *mailboxv1.BodyChunk
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return out, first, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if first == nil {
			first = r
		}
		out = append(out, r.Data...)
	}
}

func uidSet(ranges ...uint32) *mailboxv1.UIDSet {
	s := &mailboxv1.UIDSet{}
	for i := 0; i+1 < len(ranges); i += 2 {
		s.Ranges = append(s.Ranges, &mailboxv1.UIDRange{Start: ranges[i], End: ranges[i+1]})
	}
	return s
}

// newBenchEnv starts one backend for a benchmark.
func newBenchEnv(b *testing.B) *env {
	b.Helper()
	e := &env{t: b, pg: testenv.StartPostgres(b), s3: testenv.StartS3(b)}
	e.dsn = storetest.Database(b, e.pg)
	e.bucket = e.s3.BucketName()
	cfg := testConfig(e)
	cfg.PostgresMaxConns = 32
	e.start(cfg)
	return e
}

func benchCtx(b *testing.B) context.Context { return ctxT(b) }

// deliverB delivers msg to one account's INBOX and checks the status.
func deliverB(c mailboxv1.MailboxClient, msg []byte, account string) (*mailboxv1.DeliverResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := c.Deliver(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Header{Header: &mailboxv1.DeliverHeader{
		Recipients: []*mailboxv1.Recipient{{AccountId: account}}, Size: int64(len(msg))}}}); err != nil {
		return nil, err
	}
	for off := 0; off < len(msg); off += 64 << 10 {
		if err := st.Send(&mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Chunk{Chunk: msg[off:min(off+64<<10, len(msg))]}}); err != nil {
			break
		}
	}
	resp, err := st.CloseAndRecv()
	if err == nil && resp.Results[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK {
		err = fmt.Errorf("status %v", resp.Results[0].Status)
	}
	return resp, err
}
