package frontend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mailcluster/directory"
	"mailcluster/frontend/cert"
	"mailcluster/frontend/imap"
	"mailcluster/frontend/listener"
	"mailcluster/frontend/pool"
	"mailcluster/frontend/pop3"
	"mailcluster/frontend/smtpserver"
	"mailcluster/internal/profiler"
)

// Server is a running frontend: its listeners, the directory, the backend
// pool and the protocol servers.
type Server struct {
	cfg       Config
	log       *slog.Logger
	Directory *directory.Directory
	Pool      *pool.Pool
	certs     *cert.Store
	limits    *listener.Limits
	listeners map[string]net.Listener
	raw       []*listener.Listener
	serve     map[string]func(net.Listener) error // per listener
	smtp      map[string]*smtpserver.Server
	imap      *imap.Server
	pop3      *pop3.Server
	reg       *prometheus.Registry
	http      *http.Server
	httpAddr  net.Addr
	wg        sync.WaitGroup
}

// New validates cfg, creates the directory client and the backend pool
// (checking every backend once), and opens the listeners. Serve starts
// serving them.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, listeners: map[string]net.Listener{}, smtp: map[string]*smtpserver.Server{},
		serve: map[string]func(net.Listener) error{}, limits: listener.NewLimits(cfg.MaxConns, cfg.MaxConnsPerIP)}
	var tlsCfg *tls.Config
	if cfg.TLSCert != "" {
		c, err := cert.Load(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, err
		}
		s.certs = c
		tlsCfg = c.TLSConfig()
	}
	dir, err := directory.New(cfg.Directory, log.With("part", "directory"))
	if err != nil {
		return nil, err
	}
	s.Directory = dir
	backends, _ := pool.ParseBackends(cfg.Backends)
	p, err := pool.New(ctx, pool.Config{
		Backends: backends, Token: cfg.BackendToken, TLS: cfg.BackendTLS, CAFile: cfg.BackendCAFile,
		CertFile: cfg.BackendCert, KeyFile: cfg.BackendKey, HealthInterval: cfg.BackendHealth,
		HealthTimeout: min(cfg.BackendTimeout, 5*time.Second),
	}, log.With("part", "pool"))
	if err != nil {
		dir.Close()
		return nil, err
	}
	s.Pool = p
	s.reg = s.newRegistry()
	smtpMetrics := smtpserver.NewMetrics(s.reg)
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_frontend_connections_refused_total",
		Help: "Client connections refused for a connection limit, by listener and limit (total, per_ip)."}, []string{"listener", "limit"})
	s.reg.MustRegister(refused)
	proxyFrom, _ := listener.ParsePrefixes(cfg.ProxyNetworks)
	base := smtpserver.Config{
		Hostname: cfg.Hostname, TLS: tlsCfg,
		MaxMessageSize: cfg.SMTP.MaxMessageSize, MaxRecipients: cfg.SMTP.MaxRecipients, MaxExpanded: cfg.SMTP.MaxExpanded,
		MaxLineLength: cfg.SMTP.MaxLineLength, MaxHops: cfg.SMTP.MaxHops, IdleTimeout: cfg.SMTP.IdleTimeout, DataTimeout: cfg.SMTP.DataTimeout,
		BackendTimeout: cfg.BackendTimeout, SenderCheck: cfg.SMTP.SenderCheck, MaxBadRecipients: cfg.SMTP.MaxBadRecipients,
		MaxAuthFailures: cfg.SMTP.MaxAuthFailures, MaxCommandLine: cfg.SMTP.MaxCommandLine,
		Vrfy: cfg.SMTP.Vrfy, Expn: cfg.SMTP.Expn, MaxVrfy: cfg.SMTP.MaxVrfy, Metrics: smtpMetrics,
	}
	s.reg.MustRegister(dir.Collectors()...)
	if cfg.IMAPListen != "" || cfg.IMAPSListen != "" {
		srv, err := imap.New(cfg.IMAP, imap.Deps{Auth: dir, Router: imap.PoolRouter(p), TLS: tlsCfg}, log.With("part", "imap"))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.imap = srv
		s.reg.MustRegister(srv.Collectors()...)
	}
	if cfg.POP3Listen != "" || cfg.POP3SListen != "" {
		pc := cfg.POP3
		pc.Hostname, pc.TLS, pc.BackendTimeout = cfg.Hostname, tlsCfg, cfg.BackendTimeout
		s.pop3 = pop3.NewServer(pc, dir, p, log.With("part", "pop3"))
		s.reg.MustRegister(s.pop3.Collectors()...)
	}
	smtpServe := func(mode smtpserver.Mode, implicit bool) func(net.Listener) error {
		sc := base
		sc.Mode, sc.ImplicitTLS = mode, implicit
		sc.InsecureAuth = cfg.SMTP.InsecureAuth && !implicit
		srv := smtpserver.New(sc, dir, p, log)
		s.smtp[fmt.Sprint(len(s.smtp))] = srv
		return srv.Serve
	}
	for _, l := range []struct {
		name, addr string
		implicit   bool
		busy       func(perIP bool) string
		serve      func() func(net.Listener) error
	}{
		{ListenerSMTP, cfg.SMTPListen, false, smtpserver.Busy(cfg.Hostname), func() func(net.Listener) error {
			return smtpServe(smtpserver.Inbound, false)
		}},
		{ListenerSubmission, cfg.SubmissionListen, false, smtpserver.Busy(cfg.Hostname), func() func(net.Listener) error {
			return smtpServe(smtpserver.Submission, false)
		}},
		{ListenerSubmissions, cfg.SubmissionsListen, true, nil, func() func(net.Listener) error {
			return smtpServe(smtpserver.Submission, true)
		}},
		{ListenerIMAP, cfg.IMAPListen, false, imap.BusyLine, func() func(net.Listener) error { return s.imap.Serve }},
		{ListenerIMAPS, cfg.IMAPSListen, true, nil, func() func(net.Listener) error { return s.imap.Serve }},
		{ListenerPOP3, cfg.POP3Listen, false, pop3.Busy, func() func(net.Listener) error { return s.pop3.Serve }},
		{ListenerPOP3S, cfg.POP3SListen, true, nil, func() func(net.Listener) error { return s.pop3.Serve }},
	} {
		if l.addr == "" {
			continue
		}
		inner, err := net.Listen("tcp", l.addr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s-listen: %w", l.name, err)
		}
		name := l.name
		lc := listener.Config{Name: l.name, Proxy: slices.Contains(cfg.ProxyProtocol, l.name), ProxyFrom: proxyFrom,
			Limits: s.limits, Log: log, Busy: l.busy, Refused: func(perIP bool) {
				limit := "total"
				if perIP {
					limit = "per_ip"
				}
				refused.WithLabelValues(name, limit).Inc()
			}}
		raw := listener.New(inner, lc)
		s.raw = append(s.raw, raw)
		var ln net.Listener = raw
		if l.implicit {
			ln = tls.NewListener(ln, tlsCfg)
		}
		s.listeners[l.name] = ln
		s.serve[l.name] = l.serve()
	}
	if cfg.HTTPListen != "" {
		hl, err := net.Listen("tcp", cfg.HTTPListen)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("http-listen: %w", err)
		}
		s.httpAddr = hl.Addr()
		s.http = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.http.Serve(hl)
		}()
	}
	return s, nil
}

// newRegistry holds the frontend's metrics: the protocols' own, open
// connections, backend health (one series per configured backend), and the
// Go runtime's.
func (s *Server) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailcluster_frontend_open_connections",
			Help: "Client connections open now, on all listeners."}, func() float64 { return float64(s.limits.Open()) }))
	for _, name := range s.Pool.Names() {
		b := s.Pool.Backend(name)
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailcluster_frontend_backend_healthy",
			Help: "1 if the backend passed its last health check.", ConstLabels: prometheus.Labels{"backend": name}},
			func() float64 {
				if b.Healthy() {
					return 1
				}
				return 0
			}))
	}
	return reg
}

// httpHandler serves /metrics, /healthz (the process runs) and /readyz (at
// least one backend is healthy).
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		for _, name := range s.Pool.Names() {
			if s.Pool.Backend(name).Healthy() {
				io.WriteString(w, "ok\n")
				return
			}
		}
		http.Error(w, "no healthy backend", http.StatusServiceUnavailable)
	})
	if s.cfg.HTTPPprof {
		profiler.Register(mux)
	}
	return mux
}

// HTTPAddr is the address of the /metrics listener, or nil.
func (s *Server) HTTPAddr() net.Addr { return s.httpAddr }

// Addr returns the address of a listener (ListenerSMTP, …), or nil.
func (s *Server) Addr(name string) net.Addr {
	if l := s.listeners[name]; l != nil {
		return l.Addr()
	}
	return nil
}

// Serve starts serving every listener in the background.
func (s *Server) Serve() {
	for name, serve := range s.serve {
		l := s.listeners[name]
		s.log.Info("serving", "listener", name, "addr", l.Addr().String())
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
				s.log.Error("listener stopped", "listener", name, "err", err)
			}
		}()
	}
}

// ReloadTLS reads the certificate and key files again (SIGHUP). On error
// the old certificate stays in use.
func (s *Server) ReloadTLS() error {
	if s.certs == nil {
		return nil
	}
	if err := s.certs.Reload(); err != nil {
		return err
	}
	s.log.Info("TLS certificate reloaded", "not_after", s.certs.NotAfter())
	return nil
}

// OpenConnections is the number of client connections open now.
func (s *Server) OpenConnections() int { return s.limits.Open() }

// stopListening closes the listeners and waits until every Serve has
// returned, so that no protocol server is closed while it is still starting
// to serve.
func (s *Server) stopListening() {
	for _, l := range s.listeners {
		l.Close()
	}
	if s.http != nil {
		s.http.Close()
	}
	s.wg.Wait()
}

// Shutdown stops accepting, waits up to grace for sessions to end, then
// closes the rest (their in-flight messages are not acknowledged) and the
// backend and directory clients.
func (s *Server) Shutdown(grace time.Duration) {
	s.stopListening()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range s.smtp {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if srv.Shutdown(ctx) != nil {
				srv.Close()
			}
		}()
	}
	if s.imap != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.imap.Close(ctx)
		}()
	}
	if s.pop3 != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.pop3.Shutdown(ctx)
		}()
	}
	wg.Wait()
	s.Close()
}

// Close closes every listener and connection at once and the clients.
func (s *Server) Close() {
	s.stopListening()
	for _, srv := range s.smtp {
		srv.Close()
	}
	now, cancel := context.WithCancel(context.Background())
	cancel()
	if s.imap != nil {
		s.imap.Close(now)
	}
	if s.pop3 != nil {
		s.pop3.Shutdown(now)
	}
	for _, l := range s.raw {
		l.CloseConns()
	}
	if s.Pool != nil {
		s.Pool.Close()
	}
	if s.Directory != nil {
		s.Directory.Close()
	}
}

// Run serves the frontend until ctx is canceled; SIGHUP reloads the TLS
// certificate.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	// Before serving: a SIGHUP that arrived before Notify would end the
	// process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	s.Serve()
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			s.Shutdown(30 * time.Second)
			return nil
		case <-hup:
			if err := s.ReloadTLS(); err != nil {
				log.Error("TLS reload failed; keeping the old certificate", "err", err)
			}
		}
	}
}
