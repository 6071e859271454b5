package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// ldapsearch runs the ldapsearch tool as the administrator and returns the
// DNs it printed.
func ldapsearch(t *testing.T, s *Slapd, url, base string, env ...string) ([]string, error) {
	t.Helper()
	cmd := exec.Command("ldapsearch", "-x", "-LLL", "-H", url, "-D", s.AdminDN, "-w", s.AdminPW,
		"-b", base, "(objectClass=*)", "dn")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ldapsearch: %v: %s", err, out)
	}
	var dns []string
	for _, l := range strings.Split(string(out), "\n") {
		if d, ok := strings.CutPrefix(l, "dn: "); ok {
			dns = append(dns, d)
		}
	}
	return dns, nil
}

func TestSlapdTreesAreSeparate(t *testing.T) {
	s := StartSlapd(t)
	a, b := s.NewTree(t), s.NewTree(t)
	if a.BaseDN == b.BaseDN {
		t.Fatalf("two trees share %s", a.BaseDN)
	}
	s.AddLDIF(t, "dn: cn=x,"+a.PeopleDN+"\nobjectClass: person\ncn: x\nsn: x\n")
	got, err := ldapsearch(t, s, s.URL, b.BaseDN)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 { // base, people, lists
		t.Fatalf("tree b has %v, want only its own three entries", got)
	}
	got, err = ldapsearch(t, s, s.URL, a.BaseDN)
	if err != nil || len(got) != 4 {
		t.Fatalf("tree a has %v (%v), want four entries", got, err)
	}
}

func TestSlapdStopStart(t *testing.T) {
	s := NewSlapd(t, SlapdOptions{})
	tr := s.NewTree(t)
	s.Stop()
	if c, err := net.Dial("tcp", s.Addr); err == nil {
		c.Close()
		t.Fatal("stopped slapd still accepts connections")
	}
	if _, err := ldapsearch(t, s, s.URL, tr.BaseDN); err == nil {
		t.Fatal("search succeeded against a stopped slapd")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if got, err := ldapsearch(t, s, s.URL, tr.BaseDN); err != nil || len(got) != 3 {
		t.Fatalf("after restart: %v, %v; want the tree back", got, err)
	}
	s.AddLDIF(t, "dn: cn=y,"+tr.PeopleDN+"\nobjectClass: person\ncn: y\nsn: y\n")
	s.Restart(t)
	if got, err := ldapsearch(t, s, s.URL, tr.BaseDN); err != nil || len(got) != 4 {
		t.Fatalf("after Restart: %v, %v; want the tree and the entry added before", got, err)
	}
}

func TestSlapdTLS(t *testing.T) {
	s := NewSlapd(t, SlapdOptions{TLS: true})
	if s.LDAPS == "" || s.CAFile == "" {
		t.Fatal("no LDAPS URL or CA file")
	}
	if _, err := ldapsearch(t, s, s.LDAPS, SlapdSuffix, "LDAPTLS_CACERT="+s.CAFile, "LDAPTLS_REQCERT=demand"); err != nil {
		t.Fatalf("ldaps with the CA: %v", err)
	}
	// Without the CA the certificate must not verify.
	if _, err := ldapsearch(t, s, s.LDAPS, SlapdSuffix, "LDAPTLS_CACERT=/dev/null", "LDAPTLS_REQCERT=demand"); err == nil {
		t.Fatal("ldaps verified without the CA")
	}
}
