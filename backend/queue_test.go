package backend

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
	msgdkim "github.com/emersion/go-msgauth/dkim"

	"mailcluster/backend/blob"
	"mailcluster/backend/dkim"
	"mailcluster/backend/store"
	"mailcluster/backend/store/storetest"
	"mailcluster/internal/testenv"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// outEnv is a queue test's world: the backends' database and bucket, a DNS
// server on loopback, and SMTP sinks on 127.0.0.2, 127.0.0.3, … sharing
// one port, which the backends use as the remote SMTP port.
type outEnv struct {
	*env
	dns   *testenv.DNS
	port  int
	sinks map[string]*testenv.Sink // by loopback IP
}

func newOutEnv(t testing.TB) *outEnv {
	t.Helper()
	e := &env{t: t, pg: testenv.StartPostgres(t), s3: testenv.StartS3(t)}
	e.dsn = storetest.Database(t, e.pg)
	e.bucket = e.s3.BucketName()
	return &outEnv{env: e, dns: testenv.StartDNS(t), sinks: map[string]*testenv.Sink{}}
}

// sink starts an SMTP sink on ip (127.0.0.x) at the environment's port.
func (o *outEnv) sink(ip string) *testenv.Sink {
	o.t.Helper()
	addr := ip + ":0"
	if o.port != 0 {
		addr = fmt.Sprintf("%s:%d", ip, o.port)
	}
	s := testenv.StartSink(o.t, addr)
	if o.port == 0 {
		_, p, _ := net.SplitHostPort(s.Addr)
		fmt.Sscan(p, &o.port)
	}
	o.sinks[ip] = s
	return s
}

// config is a backend configuration that delivers outbound mail through
// the test's DNS and sinks, with short retry delays.
func (o *outEnv) config() Config {
	cfg := testConfig(o.env)
	cfg.QueueWorkers = 4
	cfg.QueuePoll = 100 * time.Millisecond
	cfg.QueueLease = 30 * time.Second
	cfg.QueueRetryMin, cfg.QueueRetryMax = 200*time.Millisecond, 400*time.Millisecond
	cfg.QueueLifetime = time.Hour
	cfg.OutboundHelo = "mx.example.test"
	cfg.OutboundDNS = o.dns.Addr
	cfg.OutboundPort = o.port
	if o.port == 0 {
		cfg.OutboundPort = 25 // no sink: nothing is delivered
	}
	cfg.OutboundConnectTimeout = 2 * time.Second
	cfg.OutboundCommandTimeout = 10 * time.Second
	cfg.OutboundDataTimeout = 10 * time.Second
	return cfg
}

func (o *outEnv) store() *store.Store {
	o.t.Helper()
	st, err := store.Open(ctxT(o.t), store.Config{DSN: o.dsn, MaxConns: 2})
	if err != nil {
		o.t.Fatal(err)
	}
	o.t.Cleanup(st.Close)
	return st
}

// submission is one Deliver call with remote recipients.
type submission struct {
	from, bounce string
	remote       []string
	local        []*mailboxv1.Recipient
	msg          []byte
}

func submit(t testing.TB, c mailboxv1.MailboxClient, s submission) *mailboxv1.DeliverResponse {
	t.Helper()
	st, err := c.Deliver(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(deliverHeader(&mailboxv1.DeliverHeader{Recipients: s.local, RemoteRecipients: s.remote, MailFrom: s.from,
		BounceAccountId: s.bounce, SubmitterAccountId: s.bounce, TraceId: "queue-test", Size: int64(len(s.msg))})); err != nil {
		t.Fatal(err)
	}
	if err := st.Send(deliverChunk(s.msg)); err != nil {
		t.Fatal(err)
	}
	r, err := st.CloseAndRecv()
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if r.QueueId == 0 {
		t.Fatalf("not queued: %+v", r)
	}
	return r
}

func queueMessage(from, subject, body string) []byte {
	return []byte("From: <" + from + ">\r\nTo: <someone@far.test>\r\nSubject: " + subject +
		"\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + subject + "@example.test>\r\n\r\n" + body)
}

// waitQueueEmpty waits until the queue has no entries.
func waitQueueEmpty(t *testing.T, st *store.Store, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l, err := st.QueueList(ctxT(t), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(l) == 0 {
			return
		}
		if time.Now().After(deadline) {
			d, _ := st.QueueShow(ctxT(t), l[0].ID)
			t.Fatalf("queue not empty after %v: %+v %+v", timeout, l, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inboxMessages waits until account's INBOX has n messages and returns
// their bodies.
func inboxMessages(t *testing.T, c mailboxv1.MailboxClient, account string, n int, timeout time.Duration) [][]byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		sel := selectBox(t, c, account, "INBOX")
		if int(sel.Status.Messages) >= n {
			var out [][]byte
			for _, m := range fetchAll(t, c, account, sel.Status.MailboxId, false) {
				b, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: account, MailboxId: sel.Status.MailboxId, Uid: m.Uid})
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, b)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d messages after %v, want %d", account, sel.Status.Messages, timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dsnFields returns the message/delivery-status part of a DSN as text and
// checks the DSN's structure.
func dsnFields(t *testing.T, raw []byte) (report, headers string) {
	t.Helper()
	br := bytesReader(raw)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN content type %q %v", h.Get("Content-Type"), err)
	}
	if h.Get("Auto-Submitted") != "auto-replied" {
		t.Fatalf("DSN Auto-Submitted %q", h.Get("Auto-Submitted"))
	}
	mr := textproto.NewMultipartReader(br, params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		switch strings.ToLower(strings.SplitN(p.Header.Get("Content-Type"), ";", 2)[0]) {
		case "message/delivery-status":
			report = string(b)
		case "text/rfc822-headers":
			headers = string(b)
		}
	}
	if report == "" || headers == "" {
		t.Fatalf("DSN lacks a part:\n%s", raw)
	}
	return report, headers
}

// Mail for remote recipients goes to the MX host of each domain in one
// transaction per domain, signed with the From domain's DKIM key (verified
// with go-msgauth), byte-exact after the signature; the queue empties, and
// a body no local copy shares is deleted by the next sweep.
func TestQueueDeliversSigned(t *testing.T) {
	o := newOutEnv(t)
	far := o.sink("127.0.0.2")
	other := o.sink("127.0.0.3")
	o.dns.Add(t, "far.test. MX 10 mx.far.test.", "mx.far.test. A 127.0.0.2",
		"other.test. MX 5 mx.other.test.", "mx.other.test. A 127.0.0.3")
	st := o.store()
	key, err := dkim.Generate("example.test", "sel1", "ed25519")
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := key.PrivatePEM()
	if err := st.AddDKIMKey(ctxT(t), "example.test", "sel1", pem, true); err != nil {
		t.Fatal(err)
	}
	srv := o.start(o.config())
	c := o.client(0)

	msg := queueMessage("alice@example.test", "signed", "Hello\r\n.leading dot\r\n\xe9t\xe9 8-bit\r\n")
	r := submit(t, c, submission{from: "alice@example.test", bounce: "alice",
		remote: []string{"bob@far.test", "carol@far.test", "dan@other.test"}, local: []*mailboxv1.Recipient{rcpt("alice")}, msg: msg})
	got := far.WaitMessages(t, 1, 20*time.Second)
	other.WaitMessages(t, 1, 20*time.Second)
	waitQueueEmpty(t, st, 10*time.Second)
	if len(got) != 1 || strings.Join(got[0].Recipients, ",") != "bob@far.test,carol@far.test" || got[0].From != "alice@example.test" {
		t.Fatalf("far.test got %+v", got)
	}
	data := got[0].Data
	if !bytes.HasPrefix(data, []byte("DKIM-Signature:")) || !bytes.HasSuffix(data, msg) {
		t.Fatalf("sent message:\n%q", data)
	}
	name, value := key.TXTRecord()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(data), &msgdkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
		if domain != name {
			return nil, fmt.Errorf("no TXT for %s", domain)
		}
		return []string{value}, nil
	}})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.test" {
		t.Fatalf("DKIM verification: %v %+v", err, vs)
	}
	// The local copy shares the body: the sweep keeps it.
	if _, err := srv.Sweep(ctxT(t), time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := len(inboxMessages(t, c, "alice", 1, time.Second)); n != 1 || r.Results[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK {
		t.Fatalf("alice has %d messages", n)
	}

	// Remote only: once delivered, the body is an orphan and is swept.
	submit(t, c, submission{from: "alice@example.test", bounce: "alice", remote: []string{"eve@far.test"},
		msg: queueMessage("alice@example.test", "remote-only", "x\r\n")})
	far.WaitMessages(t, 2, 20*time.Second)
	waitQueueEmpty(t, st, 10*time.Second)
	var keys []string
	o.blobs().List(ctxT(t), "", func(k string, _ time.Time) error { keys = append(keys, k); return nil })
	if _, err := srv.Sweep(ctxT(t), time.Hour); err != nil {
		t.Fatal(err)
	}
	var after []string
	o.blobs().List(ctxT(t), "", func(k string, _ time.Time) error { after = append(after, k); return nil })
	if len(keys) != 2 || len(after) != 1 {
		t.Fatalf("bodies before sweep %v, after %v; want 2 then 1", keys, after)
	}

	// Not signed: a From domain that is not the envelope sender's, though
	// it has a key; mail relayed for nobody's account (a forward).
	key2, _ := dkim.Generate("other.test", "sel1", "ed25519")
	pem2, _ := key2.PrivatePEM()
	if err := st.AddDKIMKey(ctxT(t), "other.test", "sel1", pem2, true); err != nil {
		t.Fatal(err)
	}
	srv.svc.dkim.mu.Lock()
	srv.svc.dkim.fetched = time.Time{} // reload the keys now
	srv.svc.dkim.mu.Unlock()
	submit(t, c, submission{from: "alice@example.test", bounce: "alice", remote: []string{"f1@far.test"},
		msg: queueMessage("boss@other.test", "forged", "x\r\n")})
	submit(t, c, submission{from: "stranger@example.test", remote: []string{"f2@far.test"},
		msg: queueMessage("stranger@example.test", "forwarded", "x\r\n")})
	for _, m := range far.WaitMessages(t, 4, 20*time.Second)[2:] {
		if bytes.Contains(m.Data, []byte("DKIM-Signature")) {
			t.Errorf("signed: %q", m.Data)
		}
	}
}

// blobs opens the test's bucket directly.
func (o *outEnv) blobs() blob.Store {
	o.t.Helper()
	b, err := openBlobs(ctxT(o.t), testConfig(o.env))
	if err != nil {
		o.t.Fatal(err)
	}
	return b
}

// A 4xx reply defers the recipient, which is retried after the backoff
// and then delivered exactly once; the queue shows why it waits meanwhile.
func TestQueueRetriesTemporaryFailure(t *testing.T) {
	o := newOutEnv(t)
	sink := o.sink("127.0.0.2")
	var mu sync.Mutex
	tries := 0
	release := make(chan struct{})
	sink.Rcpt = func(to string) error {
		mu.Lock()
		defer mu.Unlock()
		tries++
		if tries == 1 {
			return testenv.SMTPError(451, "4.3.2 try again later")
		}
		<-release
		return nil
	}
	o.dns.Add(t, "far.test. MX 10 mx.far.test.", "mx.far.test. A 127.0.0.2")
	st := o.store()
	cfg := o.config()
	cfg.QueueRetryMin, cfg.QueueRetryMax = time.Second, time.Second
	o.start(cfg)
	r := submit(t, o.client(0), submission{from: "alice@example.test", bounce: "alice", remote: []string{"bob@far.test"},
		msg: queueMessage("alice@example.test", "retry", "x\r\n")})
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := st.QueueShow(ctxT(t), r.QueueId)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Waiting) == 1 && strings.Contains(d.Waiting[0].LastError, "451 4.3.2 try again later") && d.Waiting[0].Attempts >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue entry does not show the deferral: %+v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	got := sink.WaitMessages(t, 1, 20*time.Second)
	waitQueueEmpty(t, st, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	if len(sink.Messages()) != 1 || len(got[0].Recipients) != 1 {
		t.Fatalf("sink got %+v", sink.Messages())
	}
	mu.Lock()
	defer mu.Unlock()
	if tries != 2 {
		t.Fatalf("%d RCPT attempts, want 2", tries)
	}
}

// A 5xx reply bounces the recipient: a DSN with the remote reply and the
// original header arrives in the local sender's INBOX, while the other
// recipient is delivered. A remote sender's bounce (here for a domain with
// a null MX) is queued with the null sender and delivered to the sender's
// MX; bounces never bounce.
func TestQueueBounces(t *testing.T) {
	o := newOutEnv(t)
	far := o.sink("127.0.0.2")
	senderMX := o.sink("127.0.0.3")
	far.Rcpt = func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return testenv.SMTPError(550, "5.1.1 no such user here")
		}
		return nil
	}
	o.dns.Add(t, "far.test. MX 10 mx.far.test.", "mx.far.test. A 127.0.0.2",
		"nomail.test. MX 0 .",
		"sender.test. MX 10 mx.sender.test.", "mx.sender.test. A 127.0.0.3")
	st := o.store()
	o.start(o.config())
	c := o.client(0)
	submit(t, c, submission{from: "alice@example.test", bounce: "alice", remote: []string{"bob@far.test", "nobody@far.test"},
		msg: queueMessage("alice@example.test", "bounce-me", "x\r\n")})
	far.WaitMessages(t, 1, 20*time.Second)
	bounces := inboxMessages(t, c, "alice", 1, 20*time.Second)
	report, headers := dsnFields(t, bounces[0])
	for _, want := range []string{"Reporting-MTA: dns; mx.example.test", "Final-Recipient: rfc822; nobody@far.test",
		"Action: failed", "Status: 5.1.1", "Remote-MTA: dns; mx.far.test", "550"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "bob@far.test") {
		t.Errorf("report names the delivered recipient:\n%s", report)
	}
	if !strings.Contains(headers, "Subject: bounce-me") || strings.Contains(headers, "\r\n\r\nx") {
		t.Errorf("original headers part:\n%s", headers)
	}
	waitQueueEmpty(t, st, 10*time.Second)

	// A remote sender, a recipient domain with a null MX (RFC 7505).
	submit(t, c, submission{from: "someone@sender.test", remote: []string{"x@nomail.test"},
		msg: queueMessage("someone@sender.test", "null-mx", "x\r\n")})
	got := senderMX.WaitMessages(t, 1, 20*time.Second)
	if got[0].From != "" || strings.Join(got[0].Recipients, ",") != "someone@sender.test" {
		t.Fatalf("remote bounce envelope: from %q to %v", got[0].From, got[0].Recipients)
	}
	report, _ = dsnFields(t, got[0].Data)
	if !strings.Contains(report, "Final-Recipient: rfc822; x@nomail.test") || !strings.Contains(report, "Status: 5.1.10") {
		t.Fatalf("null MX report:\n%s", report)
	}
	waitQueueEmpty(t, st, 10*time.Second)

	// A bounce that cannot be delivered is dropped, not bounced again.
	senderMX.Rcpt = func(string) error { return testenv.SMTPError(550, "5.1.1 gone") }
	submit(t, c, submission{from: "someone@sender.test", remote: []string{"y@nomail.test"},
		msg: queueMessage("someone@sender.test", "null-mx-2", "x\r\n")})
	waitQueueEmpty(t, st, 20*time.Second)
	if n := len(senderMX.Messages()); n != 1 {
		t.Fatalf("sender's MX got %d messages, want 1", n)
	}
}

// Mail that stays deferred past queue-lifetime bounces with 4.4.7; mail
// from the null sender just leaves the queue.
func TestQueueExpiry(t *testing.T) {
	o := newOutEnv(t)
	sink := o.sink("127.0.0.2")
	sink.Rcpt = func(string) error { return testenv.SMTPError(452, "4.2.2 mailbox full") }
	o.dns.Add(t, "far.test. MX 10 mx.far.test.", "mx.far.test. A 127.0.0.2")
	st := o.store()
	cfg := o.config()
	cfg.QueueLifetime = 2 * time.Second
	o.start(cfg)
	c := o.client(0)
	submit(t, c, submission{from: "alice@example.test", bounce: "alice", remote: []string{"bob@far.test"},
		msg: queueMessage("alice@example.test", "expire", "x\r\n")})
	submit(t, c, submission{from: "", remote: []string{"carol@far.test"}, msg: queueMessage("mailer-daemon@example.test", "bounce", "x\r\n")})
	bounces := inboxMessages(t, c, "alice", 1, 30*time.Second)
	report, _ := dsnFields(t, bounces[0])
	for _, want := range []string{"Final-Recipient: rfc822; bob@far.test", "Action: failed", "Status: 4.4.7", "452"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	waitQueueEmpty(t, st, 20*time.Second)
	if n := len(sink.Messages()); n != 0 {
		t.Fatalf("sink accepted %d messages", n)
	}
}

// A backend process killed (SIGKILL) in the middle of a delivery records
// nothing; when its lease ends another backend delivers the message, once.
func TestQueueWorkerKilled(t *testing.T) {
	o := newOutEnv(t)
	sink := o.sink("127.0.0.2")
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	sink.Data = func(m *testenv.SinkMessage) error {
		first := false
		once.Do(func() { first = true })
		if first {
			close(entered)
			<-release
			return testenv.SMTPError(451, "4.3.0 too late") // its client is dead
		}
		return nil
	}
	o.dns.Add(t, "far.test. MX 10 mx.far.test.", "mx.far.test. A 127.0.0.2")
	st := o.store()
	// Mail is taken by a backend that does not deliver ...
	cfg := o.config()
	cfg.QueueWorkers = 0
	o.start(cfg)
	submit(t, o.client(0), submission{from: "alice@example.test", bounce: "alice", remote: []string{"bob@far.test"},
		msg: queueMessage("alice@example.test", "lease", "x\r\n")})
	// ... and delivered by a backend process that is killed mid-DATA.
	cfg = o.config()
	cfg.QueueLease = 2 * time.Second
	proc := startBackendProcess(t, cfg)
	select {
	case <-entered:
	case <-time.After(60 * time.Second):
		t.Fatal("the backend process never sent the message")
	}
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	proc.Wait()
	close(release)
	o.start(cfg)
	got := sink.WaitMessages(t, 1, 30*time.Second)
	waitQueueEmpty(t, st, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	if n := len(sink.Messages()); n != 1 || got[0].Recipients[0] != "bob@far.test" {
		t.Fatalf("sink accepted %d messages: %+v", n, sink.Messages())
	}
}

// startBackendProcess runs `mailcluster backend` with cfg's database, blob
// store and queue settings as a separate process.
func startBackendProcess(t *testing.T, cfg Config) *exec.Cmd {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mailcluster")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(testenv.RepoRoot(), "cmd", "mailcluster")).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "backend")
	cmd.Env = append(os.Environ(),
		"MAILCLUSTER_GRPC_LISTEN=127.0.0.1:0", "MAILCLUSTER_HTTP_LISTEN=", "MAILCLUSTER_GRPC_TOKEN="+testToken,
		"MAILCLUSTER_POSTGRES_DSN="+cfg.PostgresDSN, "MAILCLUSTER_BLOB_DRIVER="+cfg.BlobDriver, "MAILCLUSTER_BLOB_FS_ROOT="+cfg.BlobFSRoot,
		"MAILCLUSTER_S3_ENDPOINT="+cfg.S3Endpoint, "MAILCLUSTER_S3_BUCKET="+cfg.S3Bucket, "MAILCLUSTER_S3_ACCESS_KEY="+cfg.S3AccessKey,
		"MAILCLUSTER_S3_SECRET_KEY="+cfg.S3SecretKey, "MAILCLUSTER_S3_REGION="+cfg.S3Region,
		fmt.Sprintf("MAILCLUSTER_QUEUE_WORKERS=%d", cfg.QueueWorkers), "MAILCLUSTER_QUEUE_POLL_INTERVAL="+cfg.QueuePoll.String(),
		"MAILCLUSTER_QUEUE_LEASE="+cfg.QueueLease.String(), "MAILCLUSTER_OUTBOUND_HELO="+cfg.OutboundHelo,
		"MAILCLUSTER_OUTBOUND_DNS="+cfg.OutboundDNS, fmt.Sprintf("MAILCLUSTER_OUTBOUND_PORT=%d", cfg.OutboundPort))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("backend process log:\n%s", logs.String())
		}
	})
	return cmd
}

// Two backends deliver one queue concurrently: every recipient gets every
// message exactly once.
func TestQueueTwoBackendsNoDoubles(t *testing.T) {
	o := newOutEnv(t)
	s1 := o.sink("127.0.0.2")
	s2 := o.sink("127.0.0.3")
	o.dns.Add(t, "one.test. MX 10 mx.one.test.", "mx.one.test. A 127.0.0.2",
		"two.test. MX 10 mx.two.test.", "mx.two.test. A 127.0.0.3")
	st := o.store()
	o.start(o.config())
	o.start(o.config())
	const n = 30
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			submit(t, o.client(i%2), submission{from: "alice@example.test", bounce: "alice",
				remote: []string{fmt.Sprintf("a%d@one.test", i), "b@one.test", "c@two.test"},
				msg:    queueMessage("alice@example.test", fmt.Sprintf("m%d", i), "x\r\n")})
		}(i)
	}
	wg.Wait()
	s1.WaitMessages(t, n, 60*time.Second)
	s2.WaitMessages(t, n, 60*time.Second)
	waitQueueEmpty(t, st, 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	seen := map[string]int{}
	for _, s := range []*testenv.Sink{s1, s2} {
		for _, m := range s.Messages() {
			h, _ := textproto.ReadHeader(bytesReader(m.Data))
			for _, r := range m.Recipients {
				seen[h.Get("Message-Id")+" "+r]++
			}
		}
	}
	if len(seen) != 3*n {
		t.Fatalf("%d distinct deliveries, want %d", len(seen), 3*n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s delivered %d times", k, c)
		}
	}
}

// Bad queue input is refused as a whole: nothing stored, nothing queued.
func TestQueueBadInput(t *testing.T) {
	o := newOutEnv(t)
	o.start(o.config())
	st := o.store()
	c := o.client(0)
	for _, remote := range [][]string{{"no-at-sign"}, {"a@b.test", "a@b.test"}, {"bad\r\n@x.test"}, {"@x.test"}, {strings.Repeat("a", 300) + "@x.test"}} {
		s, err := c.Deliver(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		s.Send(deliverHeader(&mailboxv1.DeliverHeader{Recipients: []*mailboxv1.Recipient{rcpt("alice")}, RemoteRecipients: remote, MailFrom: "alice@example.test"}))
		s.Send(deliverChunk([]byte("Subject: x\r\n\r\nx\r\n")))
		if _, err := s.CloseAndRecv(); err == nil {
			t.Errorf("remote %q accepted", remote)
		}
	}
	if l, _ := st.QueueList(ctxT(t), 10); len(l) != 0 {
		t.Fatalf("queued: %+v", l)
	}
	if sel := selectBox(t, c, "alice", "INBOX"); sel.Status.Messages != 0 {
		t.Fatalf("alice has %d messages", sel.Status.Messages)
	}
}

func bytesReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// With queue-delay-warning set, the sender learns once that mail is
// delayed (Action: delayed), for every waiting recipient, though two
// domains' workers attempt it; the mail stays queued.
func TestQueueDelayWarning(t *testing.T) {
	o := newOutEnv(t)
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		o.sink(ip).Rcpt = func(string) error { return testenv.SMTPError(451, "4.7.1 greylisted") }
	}
	o.dns.Add(t, "far.test. MX 10 mx.far.test.", "mx.far.test. A 127.0.0.2",
		"two.test. MX 10 mx.two.test.", "mx.two.test. A 127.0.0.3")
	st := o.store()
	cfg := o.config()
	cfg.QueueDelayWarning = 300 * time.Millisecond
	o.start(cfg)
	c := o.client(0)
	r := submit(t, c, submission{from: "alice@example.test", bounce: "alice", remote: []string{"bob@far.test", "carol@two.test"},
		msg: queueMessage("alice@example.test", "slow", "x\r\n")})
	warnings := inboxMessages(t, c, "alice", 1, 20*time.Second)
	report, _ := dsnFields(t, warnings[0])
	for _, want := range []string{"Final-Recipient: rfc822; bob@far.test", "Final-Recipient: rfc822; carol@two.test",
		"Action: delayed", "Status: 4.7.1", "Will-Retry-Until:"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	// More attempts follow; no second warning.
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := st.QueueShow(ctxT(t), r.QueueId)
		if err != nil {
			t.Fatal(err)
		}
		if d.Waiting[0].Attempts >= 4 && d.Waiting[1].Attempts >= 4 {
			if !d.WarnedLate {
				t.Fatal("warning not recorded")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("attempts: %+v", d.Waiting)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if sel := selectBox(t, c, "alice", "INBOX"); sel.Status.Messages != 1 {
		t.Fatalf("alice has %d messages, want one warning", sel.Status.Messages)
	}
}

// A message stored for some local recipients but not for another (here:
// over quota) is acknowledged, so the sender learns of the failure by a
// DSN: into the local sender's INBOX, or queued to a remote sender.
func TestBounceLocalFailure(t *testing.T) {
	o := newOutEnv(t)
	cfg := o.config()
	cfg.QueueWorkers = 0 // the queued bounce stays to be looked at
	o.start(cfg)
	st := o.store()
	c := o.client(0)
	full := &mailboxv1.Quota{Messages: 1}
	mustDeliver(t, c, []byte("Subject: fill\r\n\r\nx\r\n"), "full")
	deliverAs := func(from, bounce string) {
		t.Helper()
		s, err := c.Deliver(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		s.Send(deliverHeader(&mailboxv1.DeliverHeader{MailFrom: from, BounceAccountId: bounce, TraceId: "T1", Recipients: []*mailboxv1.Recipient{
			{AccountId: "bob", Address: "bob@example.test"}, {AccountId: "full", Address: "team@example.test", Quota: full}}}))
		s.Send(deliverChunk([]byte("Subject: partial\r\n\r\nx\r\n")))
		r, err := s.CloseAndRecv()
		if err != nil || r.Results[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK ||
			r.Results[1].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OVER_QUOTA {
			t.Fatalf("deliver: %v %+v", err, r)
		}
	}
	deliverAs("alice@example.test", "alice")
	report, headers := dsnFields(t, inboxMessages(t, c, "alice", 1, 10*time.Second)[0])
	if !strings.Contains(report, "Final-Recipient: rfc822; team@example.test") || !strings.Contains(report, "Status: 5.2.2") ||
		strings.Contains(report, "bob@") || !strings.Contains(headers, "Subject: partial") {
		t.Fatalf("report:\n%s\nheaders:\n%s", report, headers)
	}
	deliverAs("someone@far.test", "")
	l, err := st.QueueList(ctxT(t), 10)
	if err != nil || len(l) != 1 || l[0].MailFrom != "" {
		t.Fatalf("queued bounce: %v %+v", err, l)
	}
	if d, _ := st.QueueShow(ctxT(t), l[0].ID); len(d.Waiting) != 1 || d.Waiting[0].Address != "someone@far.test" {
		t.Fatalf("queued bounce: %+v", d)
	}
}

// One domain's recipients go 100 to a transaction (RFC 5321 4.5.3.1.8).
func TestQueueRecipientBatches(t *testing.T) {
	o := newOutEnv(t)
	sink := o.sink("127.0.0.2")
	o.dns.Add(t, "far.test. MX 10 mx.far.test.", "mx.far.test. A 127.0.0.2")
	st := o.store()
	cfg := o.config()
	cfg.QueueWorkers = 16 // claims of up to 160 recipients
	o.start(cfg)
	var rcpts []string
	for i := 0; i < 150; i++ {
		rcpts = append(rcpts, fmt.Sprintf("u%d@far.test", i))
	}
	submit(t, o.client(0), submission{from: "alice@example.test", bounce: "alice", remote: rcpts,
		msg: queueMessage("alice@example.test", "many", "x\r\n")})
	waitQueueEmpty(t, st, 20*time.Second)
	total, largest := 0, 0
	for _, m := range sink.Messages() {
		total += len(m.Recipients)
		largest = max(largest, len(m.Recipients))
	}
	if total != 150 || largest != 100 {
		t.Fatalf("%d recipients delivered, at most %d in a transaction; want 150 and 100", total, largest)
	}
}
