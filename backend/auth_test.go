package backend

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"mailcluster/internal/pki"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// With mTLS configured, only clients with a certificate from the client CA
// are served.
func TestMutualTLS(t *testing.T) {
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pki.NewCA("other CA")
	dir := t.TempDir()
	srvPair, _ := ca.Issue("backend", "127.0.0.1", "localhost")
	certFile, keyFile, err := srvPair.WriteFiles(dir, "backend")
	if err != nil {
		t.Fatal(err)
	}
	caFile := dir + "/ca.crt"
	if err := ca.SaveCA(caFile, dir+"/ca.key"); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 1, func(c *Config) {
		c.Token = ""
		c.TLSCert, c.TLSKey, c.ClientCA = certFile, keyFile, caFile
	})
	dial := func(cert *pki.Pair) mailboxv1.MailboxClient {
		tc := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
		if cert != nil {
			c, err := cert.TLS()
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		cc, err := grpc.NewClient(e.addrs[0], grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return mailboxv1.NewMailboxClient(cc)
	}
	good, _ := ca.Issue("frontend")
	if _, err := dial(&good).GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: "a"}); err != nil {
		t.Fatalf("client with a CA-signed certificate: %v", err)
	}
	bad, _ := other.Issue("intruder")
	for name, cert := range map[string]*pki.Pair{"no certificate": nil, "foreign certificate": &bad} {
		_, err := dial(cert).GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: "a"})
		if code := status.Code(err); code != codes.Unavailable && code != codes.Unauthenticated {
			t.Fatalf("%s: %v, want the connection refused", name, err)
		}
	}
}

// A wrong or missing token is refused; the health service stays open for
// probes.
func TestTokenAuth(t *testing.T) {
	e := newEnv(t, 1, nil)
	for _, tok := range []string{"", "wrong"} {
		_, err := e.clientWith(0, tok).GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: "a"})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("token %q: %v", tok, err)
		}
	}
	if _, err := e.client(0).GetQuota(ctxT(t), &mailboxv1.GetQuotaRequest{AccountId: "a"}); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := map[string]func(*Config){
		"grpc-client-ca": func(c *Config) { c.Token, c.Insecure = "", false },
		"postgres-dsn":   func(c *Config) { c.PostgresDSN = "" },
		"s3-bucket":      func(c *Config) { c.S3Bucket = "" },
		"blob-fs-root":   func(c *Config) { c.BlobDriver = "fs" },
		"blob-driver":    func(c *Config) { c.BlobDriver = "tape" },
		"grpc-tls-cert":  func(c *Config) { c.TLSCert = "/nonexistent.crt" },
		"max-recipients": func(c *Config) { c.MaxRecipients = 0 },
		"upload-grace":   func(c *Config) { c.UploadGrace = -1 },
		"queue-workers":  func(c *Config) { c.QueueWorkers = -1 },
		"queue-lease":    func(c *Config) { c.QueueLease = 0 },
		"queue-lifetime": func(c *Config) { c.QueueLifetime = -time.Hour },
		"queue-retry-max": func(c *Config) {
			c.QueueRetryMin, c.QueueRetryMax = time.Hour, time.Minute
		},
		"queue-delay-warning":         func(c *Config) { c.QueueDelayWarning = -1 },
		"outbound-port":               func(c *Config) { c.OutboundPort = 70000 },
		"postgres-random-page-cost":   func(c *Config) { c.PostgresRandomPageCost = -1 },
		"body-location-cache":         func(c *Config) { c.BodyRefCache = -1 },
		"outbound-domain-concurrency": func(c *Config) { c.OutboundDomainConcurrency = 0 },
		"outbound-data-timeout":       func(c *Config) { c.OutboundDataTimeout = 0 },
		"outbound-relay-username": func(c *Config) {
			c.OutboundRelayUser, c.OutboundRelayPass = "u", "p" // without outbound-relay
		},
		"outbound-relay-ca": func(c *Config) { c.OutboundRelay, c.OutboundRelayCA = "relay:587", "/nonexistent-ca.pem" },
	}
	for want, mod := range cases {
		c := DefaultConfig()
		c.Token, c.PostgresDSN = "t", "host=/tmp"
		c.S3Endpoint, c.S3Bucket, c.S3AccessKey, c.S3SecretKey = "h:1", "b", "a", "s"
		if err := c.Validate(); err != nil {
			t.Fatalf("valid config rejected: %v", err)
		}
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v", want, err)
		}
	}
}

// The outbound host name must be one a bounce can name (Reporting-MTA,
// MAILER-DAEMON@name); the backend refuses to start otherwise.
func TestHeloName(t *testing.T) {
	for _, bad := range []string{"bad name", "mx.example.test\r\nX-Injected: 1", "-x-.test"} {
		if _, err := heloName(Config{OutboundHelo: bad}); err == nil || !strings.Contains(err.Error(), "outbound-helo") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if h, err := heloName(Config{OutboundHelo: "mx.example.test"}); err != nil || h != "mx.example.test" {
		t.Errorf("good name: %q %v", h, err)
	}
	if h, err := heloName(Config{}); err != nil || h == "" {
		t.Errorf("system host name: %q %v", h, err)
	}
}
