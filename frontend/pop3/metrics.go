package pop3

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the POP3 service's Prometheus metrics. Labels are bounded:
// command names from the dispatch table (or "invalid"), results from a
// fixed set; never a user, account or address.
type metrics struct {
	commands  *prometheus.HistogramVec
	logins    *prometheus.CounterVec
	sessions  prometheus.Gauge
	retrieved prometheus.Counter
	expunged  prometheus.Counter
	ahead     *prometheus.CounterVec
	limited   prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		commands: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailcluster_pop3_command_duration_seconds",
			Help:    "Duration of POP3 commands (including writing the response), by command and result (ok, err, temporary).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}},
			[]string{"command", "result"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_pop3_logins_total",
			Help: "POP3 login attempts, by result (ok, bad-credentials, disabled, temporary)."}, []string{"result"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailcluster_pop3_sessions",
			Help: "Open POP3 connections."}),
		retrieved: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailcluster_pop3_retrieved_bytes_total",
			Help: "Message octets sent by RETR and TOP."}),
		expunged: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailcluster_pop3_expunged_messages_total",
			Help: "Messages removed by QUIT in the UPDATE state."}),
		ahead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_pop3_read_ahead_total",
			Help: "RETRs of messages read ahead, by whether the body was used (hit) or fetched again (miss)."}, []string{"result"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailcluster_pop3_limited_maildrops_total",
			Help: "Logins whose INBOX had more than -pop3-max-messages messages (only the newest were offered)."}),
	}
}

// Collectors returns the server's metrics, for the frontend's registry.
func (s *Server) Collectors() []prometheus.Collector {
	m := s.metrics
	return []prometheus.Collector{m.commands, m.logins, m.sessions, m.retrieved, m.expunged, m.ahead, m.limited}
}

func (m *metrics) command(name string, start time.Time, result string) {
	m.commands.WithLabelValues(name, result).Observe(time.Since(start).Seconds())
}
