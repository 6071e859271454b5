package backend

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"mailcluster/backend/blob"
	"mailcluster/internal/profiler"
)

// metrics are the backend's Prometheus metrics. Labels are bounded: gRPC
// method and code, blob operation and result, never an account or mailbox.
type metrics struct {
	reg        *prometheus.Registry
	rpc        *prometheus.HistogramVec
	postgres   *prometheus.HistogramVec
	blob       *prometheus.HistogramVec
	deliveries *prometheus.CounterVec
	bytesIn    prometheus.Counter
	watchers   prometheus.Gauge
	swept      prometheus.Counter

	queueClaims  prometheus.Counter
	queueResults *prometheus.CounterVec
	queueAttempt prometheus.Histogram
}

// queueSize reports the outbound queue's length on each scrape (one
// query, bounded by a timeout).
type queueSize struct {
	st interface {
		QueueStats(context.Context) (int64, int64, error)
	}
	messages, recipients *prometheus.Desc
}

func newQueueSize(st interface {
	QueueStats(context.Context) (int64, int64, error)
}) *queueSize {
	return &queueSize{st: st,
		messages:   prometheus.NewDesc("mailcluster_queue_messages", "Messages in the outbound queue (the whole cluster's).", nil, nil),
		recipients: prometheus.NewDesc("mailcluster_queue_waiting_recipients", "Recipients waiting in the outbound queue (the whole cluster's).", nil, nil)}
}

func (q *queueSize) Describe(ch chan<- *prometheus.Desc) { ch <- q.messages; ch <- q.recipients }

func (q *queueSize) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m, r, err := q.st.QueueStats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(q.messages, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(q.messages, prometheus.GaugeValue, float64(m))
	ch <- prometheus.MustNewConstMetric(q.recipients, prometheus.GaugeValue, float64(r))
}

func newMetrics() *metrics {
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		rpc: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailcluster_backend_rpc_duration_seconds",
			Help: "Duration of gRPC calls served, by method and status code.", Buckets: buckets}, []string{"method", "code"}),
		postgres: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailcluster_backend_postgres_duration_seconds",
			Help: "Duration of PostgreSQL transactions, by operation and result.", Buckets: buckets}, []string{"op", "result"}),
		blob: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailcluster_backend_blob_duration_seconds",
			Help: "Duration of blob store operations, by operation and result.", Buckets: buckets}, []string{"op", "result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_backend_deliveries_total",
			Help: "Recipients of Deliver and Append calls, by outcome."}, []string{"status"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailcluster_backend_stored_bytes_total",
			Help: "Octets of message bodies written to the blob store."}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailcluster_backend_watch_streams",
			Help: "Open Watch streams."}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailcluster_backend_swept_bodies_total",
			Help: "Unreferenced bodies deleted by the sweeper."}),
		queueClaims: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailcluster_queue_claims_total",
			Help: "Groups of queued recipients (one message, one domain) this backend took for delivery."}),
		queueResults: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_queue_recipients_total",
			Help: "Outcomes of outbound delivery attempts per recipient: delivered, deferred or bounced."}, []string{"result"}),
		queueAttempt: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mailcluster_queue_attempt_duration_seconds",
			Help: "Duration of one outbound delivery attempt (DNS, connection and transaction).", Buckets: prometheus.ExponentialBuckets(0.005, 3, 10)}),
	}
	m.reg.MustRegister(m.rpc, m.postgres, m.blob, m.deliveries, m.bytesIn, m.watchers, m.swept, m.queueClaims, m.queueResults, m.queueAttempt,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	if blob.IsTemporary(err) {
		return "temporary"
	}
	return "error"
}

// observePostgres is the store's transaction hook.
func (m *metrics) observePostgres(op string, d time.Duration, err error) {
	m.postgres.WithLabelValues(op, result(err)).Observe(d.Seconds())
}

func (m *metrics) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		m.rpc.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
		return resp, err
	}
}

func (m *metrics) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		start := time.Now()
		err := h(srv, ss)
		m.rpc.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
		return err
	}
}

// instrumentedBlobs times every blob store operation.
type instrumentedBlobs struct {
	blob.Store
	m *metrics
}

func (b instrumentedBlobs) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	start := time.Now()
	err := b.Store.Put(ctx, key, r, size)
	b.m.blob.WithLabelValues("put", result(err)).Observe(time.Since(start).Seconds())
	if err == nil && size > 0 {
		b.m.bytesIn.Add(float64(size))
	}
	return err
}

func (b instrumentedBlobs) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := b.Store.Get(ctx, key, offset, length)
	b.m.blob.WithLabelValues("get", result(err)).Observe(time.Since(start).Seconds())
	return rc, err
}

func (b instrumentedBlobs) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := b.Store.Delete(ctx, key)
	b.m.blob.WithLabelValues("delete", result(err)).Observe(time.Since(start).Seconds())
	return err
}

// httpHandler serves /metrics, /healthz (the process is alive) and /readyz
// (PostgreSQL and the blob store answer).
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.svc.store.Ping(ctx); err != nil {
			http.Error(w, "postgres unavailable", http.StatusServiceUnavailable)
			return
		}
		if err := s.svc.blobs.Ping(ctx); err != nil {
			http.Error(w, "blob store unavailable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	if s.cfg.HTTPPprof {
		profiler.Register(mux)
	}
	return mux
}

// newBodyRefsSize reports the memory of the body location cache.
func newBodyRefsSize(c *bodyRefs) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailcluster_backend_body_location_cache_bytes",
		Help: "Memory counted against body-location-cache, in bytes."}, func() float64 { _, b := c.len(); return float64(b) })
}
