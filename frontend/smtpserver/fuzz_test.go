package smtpserver

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"mailcluster/directory"
	"mailcluster/frontend/pool"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// fakeDirectory knows a few addresses in example.test.
type fakeDirectory struct{}

func (fakeDirectory) Resolve(_ context.Context, addr string) (directory.Result, error) {
	local, dom, ok := strings.Cut(strings.ToLower(addr), "@")
	if !ok || local == "" || dom == "" || strings.ContainsAny(addr, " \x00") {
		return directory.Result{}, directory.ErrInvalidAddress
	}
	if dom != "example.test" {
		return directory.Result{Kind: directory.NotLocal, Address: addr}, nil
	}
	acc := func(id string, enabled bool) directory.AccountInfo {
		return directory.AccountInfo{ID: id, Address: id + "@example.test", Enabled: enabled, Quota: directory.Quota{Messages: 100}}
	}
	switch local {
	case "alice", "postmaster":
		return directory.Result{Kind: directory.Account, Address: "alice@example.test", Account: acc("alice", true)}, nil
	case "bob":
		return directory.Result{Kind: directory.Account, Address: local + "@example.test", Account: acc("bob", true)}, nil
	case "dis":
		return directory.Result{Kind: directory.Account, Address: local + "@example.test", Account: acc("dis", false)}, nil
	case "team":
		return directory.Result{Kind: directory.List, Address: "team@example.test", Members: []directory.AccountInfo{acc("alice", true), acc("bob", true)}}, nil
	case "fwd":
		return directory.Result{Kind: directory.Forward, Address: "fwd@example.test", Account: acc("fwd", true), Forwards: []string{"bob@example.test", "fwd@example.test"}}, nil
	case "temp":
		return directory.Result{}, directory.ErrTemporary
	}
	return directory.Result{Kind: directory.Unknown, Address: addr}, nil
}

func (fakeDirectory) Authenticate(_ context.Context, login, password string, _ netip.Addr) (directory.AccountInfo, error) {
	if login == "alice" && password == "secret" {
		return directory.AccountInfo{ID: "alice", Address: "alice@example.test", Enabled: true}, nil
	}
	return directory.AccountInfo{}, directory.ErrBadCredentials
}

// fakeBackend records delivered messages; a body containing FAILTEMP or
// OVERQUOTA fails like a backend would.
type fakeBackend struct {
	mailboxv1.UnimplementedMailboxServer
	mu        sync.Mutex
	delivered [][]byte
}

func (f *fakeBackend) GetQuota(context.Context, *mailboxv1.GetQuotaRequest) (*mailboxv1.GetQuotaResponse, error) {
	return &mailboxv1.GetQuotaResponse{}, nil
}

func (f *fakeBackend) Deliver(st grpc.ClientStreamingServer[mailboxv1.DeliverRequest, mailboxv1.DeliverResponse]) error {
	first, err := st.Recv()
	if err != nil {
		return err
	}
	h := first.GetHeader()
	if h == nil || len(h.Recipients) == 0 {
		return status.Error(codes.InvalidArgument, "no header")
	}
	var body []byte
	for {
		r, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		body = append(body, r.GetChunk()...)
	}
	if bytes.Contains(body, []byte("FAILTEMP")) {
		return status.Error(codes.Unavailable, "pq: connection refused at 10.0.0.7")
	}
	res := &mailboxv1.DeliverResponse{Size: int64(len(body))}
	for range h.Recipients {
		s := mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK
		if bytes.Contains(body, []byte("OVERQUOTA")) {
			s = mailboxv1.DeliveryStatus_DELIVERY_STATUS_OVER_QUOTA
		}
		res.Results = append(res.Results, &mailboxv1.RecipientResult{Status: s, Detail: "internal detail"})
	}
	f.mu.Lock()
	f.delivered = append(f.delivered, body)
	f.mu.Unlock()
	return st.SendAndClose(res)
}

type fuzzEnv struct {
	addrs map[Mode]string
	be    *fakeBackend
}

var (
	fuzzOnce sync.Once
	fuzzE    *fuzzEnv
)

// newFuzzEnv starts, once per test binary, a fake backend and an inbound
// and a submission server on loopback.
func newFuzzEnv(t testing.TB) *fuzzEnv {
	fuzzOnce.Do(func() {
		be := &fakeBackend{}
		gl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		mailboxv1.RegisterMailboxServer(gs, be)
		hs := health.NewServer()
		hs.SetServingStatus(mailboxv1.Mailbox_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(gs, hs)
		go gs.Serve(gl)
		log := slog.New(slog.DiscardHandler)
		p, err := pool.New(context.Background(), pool.Config{Backends: map[string]string{"b1": gl.Addr().String()}}, log)
		if err != nil {
			t.Fatal(err)
		}
		e := &fuzzEnv{addrs: map[Mode]string{}, be: be}
		for _, m := range []Mode{Inbound, Submission} {
			s := New(Config{Mode: m, Hostname: "mx.example.test", InsecureAuth: true, MaxMessageSize: 4 << 20, MaxRecipients: 5,
				MaxExpanded: 10, IdleTimeout: 2 * time.Second, DataTimeout: 2 * time.Second, BackendTimeout: 2 * time.Second,
				SenderCheck: true, MaxBadRecipients: 4, MaxAuthFailures: 2}, fakeDirectory{}, p, log)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go s.Serve(l)
			e.addrs[m] = l.Addr().String()
		}
		fuzzE = e
	})
	return fuzzE
}

// FuzzSession drives the whole SMTP command loop of both listener kinds
// with arbitrary client input over a real socket. The server must answer
// only well-formed replies, never panic (go-smtp would answer 421 "Internal
// server error"), never leak internal error text, and acknowledge a
// message with 250 only when the backend stored it.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"EHLO a\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<team@example.test>\r\nRCPT TO:<fwd@example.test>\r\nRCPT TO:<dis@example.test>\r\nRCPT TO:<temp@example.test>\r\nRCPT TO:<x@other.test>\r\nDATA\r\n..dot\r\n.\r\n",
		"EHLO a\r\nMAIL FROM:<x@remote.test> SIZE=100 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<bob@example.test>\r\nBDAT 5\r\nhello\r\nBDAT 0 LAST\r\n",
		"EHLO a\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nbare\nlf\n.\nMAIL FROM:<evil>\r\n.\r\n",
		"EHLO a\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nFAILTEMP\r\n.\r\nRSET\r\nNOOP\r\nVRFY alice\r\nEXPN team\r\nHELP\r\n",
		"EHLO a\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nOVERQUOTA\r\n.\r\n",
		"EHLO a\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\na\x00b\r\n\r\n.\r\nSTARTTLS\r\n",
		"\x01EHLO a\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<z@gmail.test>\r\nDATA\r\nhi\r\n.\r\n",
		"\x01EHLO a\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nMAIL FROM:<bob@example.test>\r\n",
		"\x01EHLO a\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\nAUTH PLAIN\r\n*\r\nMAIL FROM:<a@b>\r\n",
		"EHLO a\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nRCPT TO:<d@example.test>\r\nRCPT TO:<e@example.test>\r\n",
		"EHLO " + strings.Repeat("x", 1200) + "\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		e := newFuzzEnv(t)
		mode := Inbound
		if len(in) > 0 && in[0] == 1 {
			mode, in = Submission, in[1:]
		}
		c, err := net.Dial("tcp", e.addrs[mode])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(in)
			c.(*net.TCPConn).CloseWrite()
		}()
		out, _ := io.ReadAll(c)
		for _, line := range strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n") {
			if len(line) < 4 || line[0] < '2' || line[0] > '5' || (line[3] != ' ' && line[3] != '-') {
				t.Fatalf("malformed reply line %q", line)
			}
			l := strings.ToLower(line)
			if strings.Contains(line, "Internal server error") || strings.Contains(l, "pq:") ||
				strings.Contains(l, "rpc error") || strings.Contains(l, "internal detail") || strings.Contains(l, "sasl:") {
				t.Fatalf("reply %q", line)
			}
		}
	})
}
