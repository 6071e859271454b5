// Package pool keeps one gRPC connection per backend, checks each with the
// standard gRPC health service, and routes an account to a backend: the one
// the directory names (mailHost) while it is healthy, otherwise a healthy one
// chosen stably from the account id (rendezvous hashing), so that all
// frontends send one account's traffic to the same substitute and an outage
// moves only the accounts of the backend that failed (DESIGN.md rule 6).
package pool

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// AccountHeader is the gRPC metadata key naming the account a session has
// authenticated as (the backend's AccountHeader). Sessions that act for one
// account (IMAP, POP3) send it with every call: WithAccount.
const AccountHeader = "x-mailcluster-account"

// ErrNoBackend: no backend is healthy. It is a temporary condition.
var ErrNoBackend = errors.New("no healthy backend")

// Config configures a Pool.
type Config struct {
	// Backends maps a backend name (the directory's mailHost value) to its
	// gRPC address host:port.
	Backends map[string]string
	// Token is sent as "authorization: Bearer <token>" when set.
	Token string
	// TLS: CAFile verifies backend certificates (empty: system roots);
	// CertFile and KeyFile are the client certificate for mTLS. TLS is used
	// when any of them is set or TLS is true.
	TLS      bool
	CAFile   string
	CertFile string
	KeyFile  string
	// ServerName overrides the name verified in backend certificates.
	ServerName string
	// HealthInterval is how often each backend is checked; HealthTimeout
	// bounds one check.
	HealthInterval time.Duration
	HealthTimeout  time.Duration
}

// Backend is one backend's client.
type Backend struct {
	Name   string
	Addr   string
	Client mailboxv1.MailboxClient

	conn    *grpc.ClientConn
	health  healthpb.HealthClient
	healthy atomic.Bool
}

// Healthy reports the result of the last health check.
func (b *Backend) Healthy() bool { return b.healthy.Load() }

// Pool is the set of backends. It is safe for concurrent use.
type Pool struct {
	cfg      Config
	log      *slog.Logger
	backends map[string]*Backend
	names    []string // sorted
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

type tokenCreds struct {
	token  string
	secure bool
}

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + c.token}, nil
}
func (c tokenCreds) RequireTransportSecurity() bool { return c.secure }

// DialOptions returns the gRPC dial options for cfg's credentials.
func DialOptions(cfg Config) ([]grpc.DialOption, error) {
	opts := []grpc.DialOption{
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16 << 20)),
	}
	secure := cfg.TLS || cfg.CAFile != "" || cfg.CertFile != ""
	if secure {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("backend-ca-file: %w", err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return nil, errors.New("backend-ca-file: no certificates in file")
			}
			tc.RootCAs = roots
		}
		if cfg.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("backend-cert: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds{token: cfg.Token, secure: secure}))
	}
	return opts, nil
}

// New creates the connections (gRPC connects lazily), checks every backend
// once (bounded by HealthTimeout) and starts the periodic health checks.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Pool, error) {
	if len(cfg.Backends) == 0 {
		return nil, errors.New("backends: at least one backend is required")
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 2 * time.Second
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 2 * time.Second
	}
	opts, err := DialOptions(cfg)
	if err != nil {
		return nil, err
	}
	p := &Pool{cfg: cfg, log: log, backends: map[string]*Backend{}}
	for name, addr := range cfg.Backends {
		cc, err := grpc.NewClient(addr, opts...)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("backends: %s: %w", name, err)
		}
		p.backends[name] = &Backend{Name: name, Addr: addr, Client: mailboxv1.NewMailboxClient(cc), conn: cc, health: healthpb.NewHealthClient(cc)}
		p.names = append(p.names, name)
	}
	sort.Strings(p.names)
	p.CheckNow(ctx)
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	for _, b := range p.backends {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.watch(bg, b)
		}()
	}
	return p, nil
}

// CheckNow checks every backend once, concurrently.
func (p *Pool) CheckNow(ctx context.Context) {
	var wg sync.WaitGroup
	for _, b := range p.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.check(ctx, b)
		}()
	}
	wg.Wait()
}

func (p *Pool) check(ctx context.Context, b *Backend) {
	cctx, cancel := context.WithTimeout(ctx, p.cfg.HealthTimeout)
	defer cancel()
	resp, err := b.health.Check(cctx, &healthpb.HealthCheckRequest{Service: mailboxv1.Mailbox_ServiceDesc.ServiceName})
	ok := err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING
	if was := b.healthy.Swap(ok); was != ok {
		if ok {
			p.log.Info("backend healthy", "backend", b.Name, "addr", b.Addr)
		} else {
			p.log.Warn("backend unhealthy", "backend", b.Name, "addr", b.Addr, "err", err)
		}
	}
}

func (p *Pool) watch(ctx context.Context, b *Backend) {
	t := time.NewTicker(p.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.check(ctx, b)
		}
	}
}

// MarkDown records that a call to b failed as unreachable, so that routing
// avoids it until the next successful health check.
func (p *Pool) MarkDown(b *Backend) {
	if b.healthy.Swap(false) {
		p.log.Warn("backend marked down after a failed call", "backend", b.Name)
	}
}

// Backend returns the backend with that name, or nil.
func (p *Pool) Backend(name string) *Backend { return p.backends[name] }

// Names returns the backend names, sorted.
func (p *Pool) Names() []string { return append([]string(nil), p.names...) }

// Route returns the backend for an account: mailHost's backend if it is
// configured and healthy; otherwise the healthy backend with the highest
// rendezvous hash of (account id, backend name). mailHost may be empty.
// Errors: ErrNoBackend.
func (p *Pool) Route(accountID, mailHost string) (*Backend, error) {
	if b := p.backends[mailHost]; b != nil && b.Healthy() {
		return b, nil
	}
	var best *Backend
	var bestScore uint64
	for _, name := range p.names {
		b := p.backends[name]
		if !b.Healthy() {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(accountID))
		h.Write([]byte{0})
		h.Write([]byte(name))
		if s := h.Sum64(); best == nil || s > bestScore {
			best, bestScore = b, s
		}
	}
	if best == nil {
		return nil, ErrNoBackend
	}
	return best, nil
}

// WithAccount returns ctx carrying the account header, for calls made on
// behalf of one authenticated account.
func WithAccount(ctx context.Context, accountID string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, AccountHeader, accountID)
}

// Close stops the health checks and closes the connections.
func (p *Pool) Close() {
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
	for _, b := range p.backends {
		b.conn.Close()
	}
}

// ParseBackends parses "name=host:port" pairs.
func ParseBackends(pairs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, pr := range pairs {
		name, addr, ok := strings.Cut(pr, "=")
		name, addr = strings.TrimSpace(name), strings.TrimSpace(addr)
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("%q is not name=host:port", pr)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("backend %q is named twice", name)
		}
		out[name] = addr
	}
	return out, nil
}
