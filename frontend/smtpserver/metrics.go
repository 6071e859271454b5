package smtpserver

import (
	"strconv"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the SMTP service's Prometheus metrics. Labels are bounded:
// listener kind, outcome, and reply codes from this package's fixed table;
// never an address or account.
type Metrics struct {
	sessions   *prometheus.CounterVec
	recipients *prometheus.CounterVec
	messages   *prometheus.CounterVec
	bytes      *prometheus.HistogramVec
	deliver    *prometheus.HistogramVec
	auth       *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_smtp_sessions_total",
			Help: "SMTP sessions (EHLO or HELO), by listener."}, []string{"listener"}),
		recipients: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_smtp_recipients_total",
			Help: "RCPT commands answered by the session, by listener and reply."}, []string{"listener", "reply"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_smtp_messages_total",
			Help: "Messages (DATA or BDAT LAST), by listener and reply."}, []string{"listener", "reply"}),
		bytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailcluster_smtp_stored_message_bytes",
			Help:    "Size of stored messages (with the Received header), by listener.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10)}, []string{"listener"}),
		deliver: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailcluster_smtp_data_duration_seconds",
			Help:    "Time from the start of a message to the reply, by listener and reply class.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"listener", "class"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_smtp_auth_total",
			Help: "AUTH attempts, by result (ok, failed, temporary)."}, []string{"result"}),
	}
	reg.MustRegister(m.sessions, m.recipients, m.messages, m.bytes, m.deliver, m.auth)
	return m
}

// replyLabel is "250" or the code and enhanced code of a reply.
func replyLabel(err error) string {
	if err == nil {
		return "250"
	}
	if se, ok := err.(*smtp.SMTPError); ok {
		return strconv.Itoa(se.Code) + " " + strconv.Itoa(se.EnhancedCode[0]) + "." +
			strconv.Itoa(se.EnhancedCode[1]) + "." + strconv.Itoa(se.EnhancedCode[2])
	}
	return "other"
}

func replyClass(err error) string {
	if se, ok := err.(*smtp.SMTPError); ok {
		return strconv.Itoa(se.Code/100) + "xx"
	}
	if err == nil {
		return "2xx"
	}
	return "other"
}
