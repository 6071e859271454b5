package backend

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"mailcluster/backend/blob"
	"mailcluster/backend/store"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Server is a running backend: the gRPC service, its PostgreSQL pool and
// blob store, the change listener and the sweeper.
type Server struct {
	cfg     Config
	metrics *metrics
	http    *http.Server
	log     *slog.Logger
	svc     *service
	grpc    *grpc.Server
	health  *health.Server
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New connects to PostgreSQL (applying migrations) and the blob store and
// starts the background work. cfg must be valid.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := newMetrics()
	pub := newPublisher(log)
	hub := newHub()
	st, err := store.Open(ctx, store.Config{
		Observe: m.observePostgres, Published: func(cs []store.Change) { hub.local(cs); pub.enqueue(cs) },
		DSN: cfg.PostgresDSN, MaxConns: int32(cfg.PostgresMaxConns), RandomPageCost: cfg.PostgresRandomPageCost,
		MaxUIDRanges: cfg.MaxUIDRanges, MaxSearchDepth: cfg.MaxSearchDepth, MaxSearchKeys: cfg.MaxSearchKeys,
		MaxMailboxNameLen: cfg.MaxMailboxNameLen, MaxMailboxDepth: cfg.MaxMailboxDepth, MaxMailboxes: cfg.MaxMailboxes,
	})
	if err != nil {
		return nil, fmt.Errorf("postgres-dsn: %w", err)
	}
	blobs, err := openBlobs(ctx, cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	blobs = instrumentedBlobs{Store: blobs, m: m}
	opts, err := serverOptions(cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	opts = append(opts, grpc.ChainUnaryInterceptor(m.unary()), grpc.ChainStreamInterceptor(m.stream()))
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Server{cfg: cfg, log: log, cancel: cancel, health: health.NewServer(), metrics: m}
	helo, err := heloName(cfg)
	if err != nil {
		cancel()
		st.Close()
		return nil, err
	}
	s.svc = &service{cfg: cfg, log: log, store: st, blobs: blobs, hub: hub, metrics: m, helo: helo,
		dkim: &dkimKeys{st: st, log: log.With("part", "dkim")}, refs: newBodyRefs(cfg.BodyRefCache)}
	m.reg.MustRegister(newBodyRefsSize(s.svc.refs))
	m.reg.MustRegister(newQueueSize(st))
	if cfg.QueueWorkers > 0 {
		q, err := newQueueRunner(s.svc)
		if err != nil {
			cancel()
			st.Close()
			return nil, err
		}
		s.svc.queue = q
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			q.run(bg)
		}()
	}
	s.grpc = grpc.NewServer(opts...)
	mailboxv1.RegisterMailboxServer(s.grpc, s.svc)
	healthpb.RegisterHealthServer(s.grpc, s.health)

	pub.st = st
	s.wg.Add(4)
	go func() {
		defer s.wg.Done()
		pub.run(bg)
	}()
	go func() {
		defer s.wg.Done()
		st.Listen(bg, s.svc.hub.publish, func() {
			s.svc.refs.clear()
			go s.svc.resync(bg)
		})
	}()
	go func() {
		defer s.wg.Done()
		s.sweepLoop(bg)
	}()
	go func() {
		defer s.wg.Done()
		s.healthLoop(bg)
	}()
	return s, nil
}

func openBlobs(ctx context.Context, cfg Config) (blob.Store, error) {
	if cfg.BlobDriver == "fs" {
		b, err := blob.NewFS(blob.FSConfig{Root: cfg.BlobFSRoot})
		if err != nil {
			return nil, fmt.Errorf("blob-fs-root: %w", err)
		}
		return b, nil
	}
	b, err := blob.NewS3(ctx, blob.S3Config{
		Endpoint: cfg.S3Endpoint, Bucket: cfg.S3Bucket, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey,
		Region: cfg.S3Region, UseTLS: cfg.S3TLS, CAFile: cfg.S3CAFile, CreateBucket: cfg.S3CreateBucket, Timeout: cfg.S3Timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("s3-endpoint: %w", err)
	}
	return b, nil
}

// serverOptions builds the gRPC server's credentials, limits and
// interceptors.
func serverOptions(cfg Config) ([]grpc.ServerOption, error) {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(4 << 20),
		grpc.ForceServerCodecV2(newCodec()),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("grpc-tls-cert: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if cfg.ClientCA != "" {
			pem, err := os.ReadFile(cfg.ClientCA)
			if err != nil {
				return nil, fmt.Errorf("grpc-client-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errors.New("grpc-client-ca: no certificates in file")
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	if cfg.Token != "" {
		want := []byte("Bearer " + cfg.Token)
		check := func(ctx context.Context, method string) error {
			if strings.HasPrefix(method, "/grpc.health.v1.Health/") {
				return nil
			}
			md, _ := metadata.FromIncomingContext(ctx)
			for _, v := range md.Get("authorization") {
				if subtle.ConstantTimeCompare([]byte(v), want) == 1 {
					return nil
				}
			}
			return status.Error(codes.Unauthenticated, "missing or wrong token")
		}
		opts = append(opts,
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if err := check(ctx, info.FullMethod); err != nil {
					return nil, err
				}
				return h(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				if err := check(ss.Context(), info.FullMethod); err != nil {
					return err
				}
				return h(srv, ss)
			}))
	}
	return opts, nil
}

// Serve serves gRPC on l until Close.
func (s *Server) Serve(l net.Listener) error { return s.grpc.Serve(l) }

// ServeHTTP serves /metrics, /healthz and /readyz on l until Close.
func (s *Server) ServeHTTP(l net.Listener) error {
	s.http = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops accepting calls, lets running calls finish for up to grace,
// then stops the background work and closes the pools.
func (s *Server) Close(grace time.Duration) {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.grpc.Stop()
	}
	if s.http != nil {
		s.http.Close()
	}
	s.cancel()
	s.wg.Wait()
	s.svc.store.Close()
}

// Sweep runs one sweep now: uploads older than grace that nothing
// references, and bodies that lost their last reference, are deleted, and
// the expunge log is pruned to the configured retention. It returns the
// number of bodies deleted.
func (s *Server) Sweep(ctx context.Context, grace time.Duration) (int, error) {
	total := 0
	del := func(ctx context.Context, key string) error { return s.svc.blobs.Delete(ctx, key) }
	for {
		n, err := s.svc.store.SweepUploads(ctx, grace, 100, del)
		total += n
		if err != nil {
			return total, err
		}
		if n < 100 {
			break
		}
	}
	for {
		n, err := s.svc.store.SweepOrphans(ctx, 100, del)
		total += n
		if err != nil {
			return total, err
		}
		if n < 100 {
			break
		}
	}
	for {
		n, err := s.svc.store.PruneExpunged(ctx, s.cfg.ExpungeLog, 1000)
		if err != nil {
			return total, err
		}
		if n < 1000 {
			break
		}
	}
	return total, nil
}

func (s *Server) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.Sweep(ctx, s.cfg.UploadGrace)
			s.metrics.swept.Add(float64(n))
			if err != nil && ctx.Err() == nil {
				s.log.Warn("sweep", "err", err)
			} else if n > 0 {
				s.log.Info("sweep", "deleted", n)
			}
		}
	}
}

// healthLoop keeps the gRPC health status in line with the dependencies.
func (s *Server) healthLoop(ctx context.Context) {
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.svc.store.Ping(pctx)
		if err == nil {
			err = s.svc.blobs.Ping(pctx)
		}
		cancel()
		st := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
			if ctx.Err() == nil {
				s.log.Warn("not ready", "err", err)
			}
		}
		s.health.SetServingStatus("", st)
		s.health.SetServingStatus(mailboxv1.Mailbox_ServiceDesc.ServiceName, st)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// Run serves the backend until ctx is canceled.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		s.Close(0)
		return fmt.Errorf("grpc-listen: %w", err)
	}
	log.Info("backend serving", "addr", l.Addr().String(), "blob", cfg.BlobDriver)
	errc := make(chan error, 2)
	go func() { errc <- s.Serve(l) }()
	if cfg.HTTPListen != "" {
		hl, err := net.Listen("tcp", cfg.HTTPListen)
		if err != nil {
			s.Close(0)
			return fmt.Errorf("http-listen: %w", err)
		}
		log.Info("metrics and health serving", "addr", hl.Addr().String())
		go func() { errc <- s.ServeHTTP(hl) }()
	}
	select {
	case <-ctx.Done():
		s.Close(30 * time.Second)
		return nil
	case err := <-errc:
		s.Close(0)
		return err
	}
}
