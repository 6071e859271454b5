package admin_test

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"mailcluster/admin"
	"mailcluster/internal/testenv"
)

// BenchmarkBulkAdd measures `admin user bulk-add --generate N` (address
// check, add, Password Modify per account) against a real slapd.
func BenchmarkBulkAdd(b *testing.B) {
	s := testenv.StartSlapd(b)
	tree := s.NewTree(b)
	var out, errb bytes.Buffer
	b.ResetTimer()
	code := admin.Main(context.Background(), []string{"--ldap-urls=" + s.URL, "--ldap-base-dn=" + tree.BaseDN,
		"--ldap-bind-dn=" + testenv.SlapdAdminDN, "--ldap-bind-password=" + testenv.SlapdAdminPassword,
		"user", "bulk-add", "--generate", strconv.Itoa(b.N), "--domain", "example.test", "--password", "secret",
		"--workers", "8"}, &out, &errb)
	if code != 0 {
		b.Fatalf("exit %d: %s %s", code, out.String(), errb.String())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accounts/s")
}
