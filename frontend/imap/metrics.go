package imap

import (
	"errors"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the IMAP service's Prometheus metrics. Labels are bounded:
// command names from a fixed list and results from a fixed set; never a
// user, account or mailbox name.
type metrics struct {
	commands   *prometheus.HistogramVec
	logins     *prometheus.CounterVec
	sessions   prometheus.Gauge
	mailboxes  prometheus.Gauge
	resyncs    *prometheus.CounterVec
	watchUp    prometheus.Gauge
	watchFails prometheus.Counter
	bodyBytes  prometheus.Counter
	cached     *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		commands: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailcluster_imap_command_duration_seconds",
			Help:    "Duration of IMAP commands in the session (backend calls and streamed responses), by command and result (ok, no, bad, temporary).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
			[]string{"command", "result"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_imap_logins_total",
			Help: "IMAP login attempts, by result (ok, failed, temporary)."}, []string{"result"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailcluster_imap_sessions",
			Help: "Open IMAP connections."}),
		mailboxes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailcluster_imap_selected_mailboxes",
			Help: "Mailboxes selected by at least one session of this frontend (shared state)."}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_imap_resyncs_total",
			Help: "Mailbox resynchronisations from the backend, by kind (changes, full, failed; own: a change of this frontend applied from its own result, event: a delivery applied from the Watch event that reported it, both without a call)."}, []string{"kind"}),
		watchUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailcluster_imap_watch_up",
			Help: "1 while the shared backend Watch stream is open."}),
		watchFails: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailcluster_imap_watch_failures_total",
			Help: "Times the shared backend Watch stream failed and was reopened."}),
		bodyBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailcluster_imap_body_bytes_total",
			Help: "Message octets streamed to clients by FETCH BODY[...]."}),
		cached: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_imap_cache_answers_total",
			Help: "Answers the frontend gave from its message cache without a backend call (imap-message-cache), by kind (fetch: messages of a FETCH; search: SEARCH commands)."}, []string{"kind"}),
	}
}

// Collectors returns the server's metrics, for the frontend's registry.
func (s *Server) Collectors() []prometheus.Collector {
	m := s.metrics
	return []prometheus.Collector{m.commands, m.logins, m.sessions, m.mailboxes, m.resyncs, m.watchUp, m.watchFails, m.bodyBytes, m.cached,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailcluster_imap_envelope_cache_entries",
			Help: "Rendered ENVELOPEs held by the envelope cache (imap-envelope-cache)."},
			func() float64 { n, _ := s.envelopes.len(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailcluster_imap_envelope_cache_bytes",
			Help: "Memory counted against imap-envelope-cache, in bytes."},
			func() float64 { _, b := s.envelopes.len(); return float64(b) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailcluster_imap_message_cache_bytes",
			Help: "Memory counted against imap-message-cache, in bytes, over all selected mailboxes."},
			func() float64 { return float64(s.cfg.MessageCache - s.metaLeft.Load()) }),
	}
}

// command records one command; use as defer m.command("fetch", time.Now(), &err).
func (m *metrics) command(name string, start time.Time, errp *error) {
	result := "ok"
	var ie *imap.Error
	switch {
	case *errp == nil:
	case errors.As(*errp, &ie) && ie.Type == imap.StatusResponseTypeBad:
		result = "bad"
	case errors.As(*errp, &ie) && ie.Code != imap.ResponseCodeUnavailable:
		result = "no"
	default:
		result = "temporary"
	}
	m.commands.WithLabelValues(name, result).Observe(time.Since(start).Seconds())
}
