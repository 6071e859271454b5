package directory

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics count lookups by how they were answered and logins by outcome.
// Labels are bounded: never an address or a login.
type metrics struct {
	lookups *prometheus.CounterVec
	logins  *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_directory_lookups_total",
			Help: "Address lookups by how they were answered: cache (fresh cached answer), ldap (asked LDAP), stale (cached answer served during an LDAP outage), error."},
			[]string{"source"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailcluster_directory_logins_total",
			Help: "Authentications by result: ok, bad_credentials, disabled, temporary, error."},
			[]string{"result"}),
	}
}

// Collectors returns the directory's Prometheus metrics, for the caller's
// registry.
func (d *Directory) Collectors() []prometheus.Collector {
	return []prometheus.Collector{d.metrics.lookups, d.metrics.logins}
}

func (m *metrics) login(err error) {
	r := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrBadCredentials):
		r = "bad_credentials"
	case errors.Is(err, ErrDisabled):
		r = "disabled"
	case errors.Is(err, ErrTemporary):
		r = "temporary"
	default:
		r = "error"
	}
	m.logins.WithLabelValues(r).Inc()
}
