package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Slapd suffix and administrator of every slapd started by testenv.
const (
	SlapdSuffix        = "dc=example,dc=test"
	SlapdAdminDN       = "cn=admin," + SlapdSuffix
	SlapdAdminPassword = "admin-secret"
)

// Slapd is a private OpenLDAP server on loopback with one mdb database
// (suffix SlapdSuffix, root DN SlapdAdminDN). It loads the standard
// inetOrgPerson and inetLocalMailRecipient schemas and mailcluster's own
// deploy/ldap/mailcluster.schema.
type Slapd struct {
	URL     string // ldap://127.0.0.1:port/
	Addr    string // 127.0.0.1:port
	LDAPS   string // ldaps://127.0.0.1:port/ when started with TLS, else ""
	CAFile  string // PEM CA certificate that signed the server certificate (TLS only)
	Dir     string
	AdminDN string
	AdminPW string

	mu      sync.Mutex
	proc    *Process
	conf    string
	logPath string
	ldapsAd string
}

// SlapdOptions configures NewSlapd.
type SlapdOptions struct {
	// TLS makes the server offer StartTLS on URL and listen for LDAPS too,
	// with a certificate for 127.0.0.1 and "localhost" signed by a fresh CA
	// (written to CAFile).
	TLS bool
	// Seed is an LDIF file loaded with slapadd before the server starts; it
	// must contain the suffix entry. Empty: only the suffix entry is created.
	Seed string
	// Global is added to slapd.conf's global section (before the
	// databases), e.g. access rules for the root DSE.
	Global string
}

var (
	slapdOnce sync.Once
	slapdSrv  *Slapd
	slapdErr  error
	treeSeq   atomic.Int64
)

// SlapdPath returns the path of the slapd binary.
func SlapdPath() (string, error) {
	for _, p := range []string{"/usr/sbin/slapd", "/usr/local/sbin/slapd"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("slapd"); err == nil {
		return p, nil
	}
	return "", errMissingTool("OpenLDAP slapd (Debian package slapd)")
}

// StartSlapd starts the test binary's shared slapd once and returns it. Tests
// that share it keep apart by working in their own subtree (NewTree). Main
// stops it when the tests end.
func StartSlapd(t testing.TB) *Slapd {
	t.Helper()
	slapdOnce.Do(func() { slapdSrv, slapdErr = startSlapd(SlapdOptions{}) })
	if slapdErr != nil {
		t.Fatalf("testenv: slapd: %v", slapdErr)
	}
	return slapdSrv
}

// NewSlapd starts an independent slapd with its own database, for tests that
// stop it, run two servers (failover) or need TLS. It is stopped and its
// files removed when the test ends.
func NewSlapd(t testing.TB, opt SlapdOptions) *Slapd {
	t.Helper()
	s, err := startSlapd(opt)
	if err != nil {
		t.Fatalf("testenv: slapd: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		os.RemoveAll(s.Dir)
	})
	return s
}

func startSlapd(opt SlapdOptions) (*Slapd, error) {
	bin, err := SlapdPath()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "mctest-slapd-")
	if err != nil {
		return nil, err
	}
	atExit(func() { os.RemoveAll(base) })
	s := &Slapd{Dir: base, AdminDN: SlapdAdminDN, AdminPW: SlapdAdminPassword,
		conf: filepath.Join(base, "slapd.conf"), logPath: filepath.Join(base, "slapd.log")}
	if err := os.MkdirAll(filepath.Join(base, "data"), 0o700); err != nil {
		return nil, err
	}
	var tlsConf string
	if opt.TLS {
		if tlsConf, err = s.writeCerts(); err != nil {
			return nil, err
		}
	}
	schema := filepath.Join(RepoRoot(), "deploy", "ldap", "mailcluster.schema")
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/misc.schema
include %s
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload argon2
pidfile %s
%s
%s
database config
database mdb
maxsize 1073741824
suffix "%s"
rootdn "%s"
rootpw %s
directory %s
dbnosync
index objectClass eq
index uid,mail,mailLocalAddress,member,entryUUID eq
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
`, schema, filepath.Join(base, "slapd.pid"), tlsConf, opt.Global, SlapdSuffix, SlapdAdminDN, SlapdAdminPassword,
		filepath.Join(base, "data"))
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.Command(filepath.Join(filepath.Dir(bin), "slaptest"), "-Q", "-u", "-f", s.conf).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("slaptest: %v\n%s", err, out)
	}
	seed := opt.Seed
	if seed == "" {
		seed = filepath.Join(base, "base.ldif")
		ldif := fmt.Sprintf("dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: mailcluster tests\n", SlapdSuffix)
		if err := os.WriteFile(seed, []byte(ldif), 0o600); err != nil {
			return nil, err
		}
	}
	if out, err := exec.Command(filepath.Join(filepath.Dir(bin), "slapadd"), "-q", "-f", s.conf, "-l", seed).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("slapadd %s: %v\n%s", seed, err, out)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		s.Addr = "127.0.0.1:" + strconv.Itoa(port)
		s.URL = "ldap://" + s.Addr + "/"
		if opt.TLS {
			tport, err := FreePort()
			if err != nil {
				return nil, err
			}
			s.ldapsAd = "127.0.0.1:" + strconv.Itoa(tport)
			s.LDAPS = "ldaps://" + s.ldapsAd + "/"
		}
		if lastErr = s.Start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

// Start starts the server again after Stop, on the same address and with the
// same data. Starting a running server does nothing.
func (s *Slapd) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.Exited() {
		return nil
	}
	bin, err := SlapdPath()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	urls := s.URL
	if s.LDAPS != "" {
		urls += " " + s.LDAPS
	}
	cmd := exec.Command(bin, "-d", "0", "-f", s.conf, "-h", urls)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProcess(cmd, syscall.SIGTERM)
	if err != nil {
		return err
	}
	logTail := func() string { return readTail(s.logPath) }
	err = waitTCP(s.Addr, p, 20*time.Second, logTail)
	if err == nil && s.ldapsAd != "" {
		err = waitTCP(s.ldapsAd, p, 20*time.Second, logTail)
	}
	if err != nil {
		p.Stop(syscall.SIGKILL, time.Second)
		return fmt.Errorf("slapd: %w", err)
	}
	s.proc = p
	return nil
}

// Stop stops the server (SIGTERM, by PID) and waits until it has exited, so
// that clients see connections closed and refused: an LDAP outage.
func (s *Slapd) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.Stop(syscall.SIGTERM, 10*time.Second)
	}
}

// Restart stops and starts the server, failing the test if it cannot.
func (s *Slapd) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.Start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// Tree is a fresh subtree of the directory for one test.
type Tree struct {
	BaseDN   string // ou=tN,<suffix>
	PeopleDN string // ou=people,<BaseDN>
	ListsDN  string // ou=lists,<BaseDN>
}

// NewTree creates a uniquely named subtree with ou=people and ou=lists below
// it, so that a test sees only its own entries when it searches below BaseDN.
func (s *Slapd) NewTree(t testing.TB) Tree {
	t.Helper()
	name := fmt.Sprintf("t%d-%d", os.Getpid(), treeSeq.Add(1))
	tr := Tree{BaseDN: "ou=" + name + "," + SlapdSuffix}
	tr.PeopleDN = "ou=people," + tr.BaseDN
	tr.ListsDN = "ou=lists," + tr.BaseDN
	s.AddLDIF(t, fmt.Sprintf(`dn: %s
objectClass: organizationalUnit
ou: %s

dn: %s
objectClass: organizationalUnit
ou: people

dn: %s
objectClass: organizationalUnit
ou: lists
`, tr.BaseDN, name, tr.PeopleDN, tr.ListsDN))
	return tr
}

// AddLDIF adds the entries of an LDIF text as the administrator (ldapadd),
// failing the test if any cannot be added.
func (s *Slapd) AddLDIF(t testing.TB, ldif string) {
	t.Helper()
	if err := s.LDAPAdd(ldif); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// LDAPAdd adds the entries of an LDIF text as the administrator with the
// ldapadd tool (ldap-utils).
func (s *Slapd) LDAPAdd(ldif string) error {
	bin, err := exec.LookPath("ldapadd")
	if err != nil {
		return errMissingTool("ldapadd (Debian package ldap-utils)")
	}
	cmd := exec.Command(bin, "-x", "-H", s.URL, "-D", s.AdminDN, "-w", s.AdminPW)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ldapadd: %v\n%s", err, out)
	}
	return nil
}

// writeCerts creates a CA and a server certificate for 127.0.0.1/localhost
// in s.Dir and returns the slapd.conf TLS directives.
func (s *Slapd) writeCerts() (string, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mailcluster test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	s.CAFile = filepath.Join(s.Dir, "ca.pem")
	certFile, keyFile := filepath.Join(s.Dir, "server.pem"), filepath.Join(s.Dir, "server.key")
	files := map[string][]byte{
		s.CAFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	for name, b := range files {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n",
		s.CAFile, certFile, keyFile), nil
}
