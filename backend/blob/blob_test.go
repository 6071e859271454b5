package blob_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"mailcluster/backend/blob"
	"mailcluster/backend/blob/blobtest"
	"mailcluster/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newFS(t testing.TB) blob.Store {
	s, err := blob.NewFS(blob.FSConfig{Root: filepath.Join(t.TempDir(), "blobs")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// s3Config returns a configuration for a fresh bucket on the test S3 server.
func s3Config(t testing.TB) blob.S3Config {
	srv := testenv.StartS3(t)
	return blob.S3Config{
		Endpoint:     srv.Endpoint,
		Bucket:       srv.BucketName(),
		AccessKey:    srv.AccessKey,
		SecretKey:    srv.SecretKey,
		Region:       srv.Region,
		CreateBucket: true,
		PartSize:     5 << 20, // S3's minimum, so blobtest.LargeSize takes two parts
	}
}

func newS3(t testing.TB) blob.Store {
	s, err := blob.NewS3(context.Background(), s3Config(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFS(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newFS(t) })
}

func TestS3(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newS3(t) })
}

func TestValidKey(t *testing.T) {
	for _, k := range []string{"a", "b/2026/11/25/0123abcd", "ü/ñ", "a.b/c.d", "a b", "x..y", "a/b-/c_"} {
		if err := blob.ValidKey(k); err != nil {
			t.Errorf("ValidKey(%q) = %v, want nil", k, err)
		}
	}
	for _, k := range []string{"", "/a", "a/", "a//b", "..", "a/../b", ".a", "a\x00", "a\\b", "\xc3", "a\u0085b"} {
		if err := blob.ValidKey(k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("ValidKey(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
}

// FuzzValidKey checks that every key ValidKey accepts names a path inside
// a store's root and survives the round trip through the file system
// layout unchanged.
func FuzzValidKey(f *testing.F) {
	for _, k := range []string{"a", "a/b", "../a", "a/../b", "/a", "a//b", ".a", "a/.", "ü/x", "a\\b", "a\x00"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if blob.ValidKey(key) != nil {
			return
		}
		if !filepath.IsLocal(key) || filepath.ToSlash(filepath.Clean(key)) != key {
			t.Fatalf("ValidKey accepted %q, which is not a clean local path", key)
		}
		if !utf8.ValidString(key) || strings.ContainsAny(key, "\x00\\") || len(key) > blob.MaxKeyLen {
			t.Fatalf("ValidKey accepted %q", key)
		}
	})
}

func TestIsTemporary(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("x"), false},
		{blob.ErrNotFound, false},
		{blob.ErrInvalidKey, false},
		{context.Canceled, false},
		{context.DeadlineExceeded, true},
		{blob.ErrTimeout, true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		{io.ErrUnexpectedEOF, true},
		{&os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, true},
		{&os.PathError{Op: "open", Path: "x", Err: syscall.EACCES}, false},
		{fmt.Errorf("put: %w", minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}), true},
		{minio.ErrorResponse{Code: "InternalError", StatusCode: 500}, true},
		{minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, false},
		{minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}, false},
	} {
		if got := blob.IsTemporary(c.err); got != c.want {
			t.Errorf("IsTemporary(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestFSConfig(t *testing.T) {
	if _, err := blob.NewFS(blob.FSConfig{}); err == nil || !strings.Contains(err.Error(), "Root") {
		t.Fatalf("NewFS with no Root: %v, want an error naming Root", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := blob.NewFS(blob.FSConfig{Root: file}); err == nil {
		t.Fatalf("NewFS with Root a file: no error")
	}
	if _, err := blob.NewFS(blob.FSConfig{Root: filepath.Join(file, "sub")}); err == nil {
		t.Fatalf("NewFS with Root under a file: no error")
	}
}

// TestFSLayout checks the on-disk contract: key paths map to files under
// Root, nothing escapes Root, nothing but objects is left behind, and
// Delete prunes the directories it empties.
func TestFSLayout(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	root := filepath.Join(base, "blobs")
	s, err := blob.NewFS(blob.FSConfig{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "b/2026/11/25/abc", strings.NewReader("body"), -1); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "b", "2026", "11", "25", "abc")); err != nil || string(b) != "body" {
		t.Fatalf("object file: %q, %v", b, err)
	}
	for _, key := range []string{"../escape", "b/../../escape", "/tmp/escape"} {
		if err := s.Put(ctx, key, strings.NewReader("x"), 1); !errors.Is(err, blob.ErrInvalidKey) {
			t.Fatalf("Put(%q): %v, want ErrInvalidKey", key, err)
		}
	}
	// A failed Put leaves no temporary file.
	if err := s.Put(ctx, "b/2026/11/25/short", strings.NewReader("x"), 5); err == nil {
		t.Fatal("short Put: no error")
	}
	var files []string
	err = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(base, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0] != filepath.Join("blobs", "b", "2026", "11", "25", "abc") {
		t.Fatalf("files under the test directory: %q, want only the object", files)
	}
	// A leftover temporary file is not an object.
	if err := os.WriteFile(filepath.Join(root, "b", ".tmp-123"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := s.List(ctx, "", func(k string, _ time.Time) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "b/2026/11/25/abc" {
		t.Fatalf("List: %q", keys)
	}
	os.Remove(filepath.Join(root, "b", ".tmp-123"))
	if err := s.Delete(ctx, "b/2026/11/25/abc"); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(root)
	if err != nil || len(ents) != 0 {
		t.Fatalf("Root after deleting the only object: %v entries (%v), want none", len(ents), err)
	}
}

// TestFSKeyConflict checks that a key cannot also be a directory of keys
// in the file store, and that refusing it harms neither.
func TestFSKeyConflict(t *testing.T) {
	ctx := context.Background()
	s := newFS(t)
	if err := s.Put(ctx, "a", strings.NewReader("a"), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a/b", strings.NewReader("ab"), 2); err == nil {
		t.Fatal(`Put("a/b") while "a" exists: no error`)
	}
	if err := s.Put(ctx, "c/d", strings.NewReader("cd"), 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "c", strings.NewReader("c"), 1); err == nil {
		t.Fatal(`Put("c") while "c/d" exists: no error`)
	}
	if rc, err := s.Get(ctx, "c", 0, -1); !errors.Is(err, blob.ErrNotFound) {
		if rc != nil {
			rc.Close()
		}
		t.Fatalf(`Get("c") (a directory): %v, want ErrNotFound`, err)
	}
	if err := s.Delete(ctx, "c"); err != nil {
		t.Fatalf(`Delete("c") (a directory): %v`, err)
	}
	for key, want := range map[string]string{"a": "a", "c/d": "cd"} {
		rc, err := s.Get(ctx, key, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != want {
			t.Fatalf("Get(%q) = %q, want %q", key, b, want)
		}
	}
}

func TestS3ConfigValidation(t *testing.T) {
	good := blob.S3Config{Endpoint: "127.0.0.1:9000", Bucket: "mail", AccessKey: "ak", SecretKey: "secretkey"}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cases := []struct {
		name  string
		edit  func(*blob.S3Config)
		field string // the error must name it
	}{
		{"no endpoint", func(c *blob.S3Config) { c.Endpoint = "" }, "Endpoint"},
		{"scheme", func(c *blob.S3Config) { c.Endpoint = "http://127.0.0.1:9000" }, "Endpoint"},
		{"no port", func(c *blob.S3Config) { c.Endpoint = "s3.example.com" }, "Endpoint"},
		{"no bucket", func(c *blob.S3Config) { c.Bucket = "" }, "Bucket"},
		{"bad bucket", func(c *blob.S3Config) { c.Bucket = "Bad_Bucket" }, "Bucket"},
		{"no access key", func(c *blob.S3Config) { c.AccessKey = "" }, "AccessKey"},
		{"no secret key", func(c *blob.S3Config) { c.SecretKey = "" }, "SecretKey"},
		{"CA without TLS", func(c *blob.S3Config) { c.CAFile = "/etc/ssl/ca.pem" }, "CAFile"},
		{"small parts", func(c *blob.S3Config) { c.PartSize = 1 << 20 }, "PartSize"},
		{"huge parts", func(c *blob.S3Config) { c.PartSize = 6 << 30 }, "PartSize"},
		{"negative timeout", func(c *blob.S3Config) { c.Timeout = -time.Second }, "Timeout"},
		{"negative attempts", func(c *blob.S3Config) { c.MaxAttempts = -1 }, "MaxAttempts"},
	}
	for _, c := range cases {
		cfg := good
		c.edit(&cfg)
		_, err := blob.NewS3(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: NewS3: %v, want an error naming %s", c.name, err, c.field)
		}
		if blob.IsTemporary(err) {
			t.Errorf("%s: IsTemporary(%v) = true for a configuration error", c.name, err)
		}
	}
	// CA files are read at start.
	cfg := good
	cfg.UseTLS = true
	cfg.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := blob.NewS3(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "CAFile") {
		t.Errorf("missing CAFile: %v, want an error naming CAFile", err)
	}
	if err := os.WriteFile(cfg.CAFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := blob.NewS3(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "CAFile") {
		t.Errorf("garbage CAFile: %v, want an error naming CAFile", err)
	}
}

func TestS3WrongCredentials(t *testing.T) {
	for _, edit := range []func(*blob.S3Config){
		func(c *blob.S3Config) { c.SecretKey = "wrong-secret-key" },
		func(c *blob.S3Config) { c.AccessKey = "nosuchuser" },
	} {
		cfg := s3Config(t)
		edit(&cfg)
		_, err := blob.NewS3(context.Background(), cfg)
		if err == nil {
			t.Fatal("NewS3 with wrong credentials: no error")
		}
		if !strings.Contains(err.Error(), "credentials rejected") {
			t.Errorf("NewS3 with wrong credentials: %v, want it to say the credentials were rejected", err)
		}
		if blob.IsTemporary(err) {
			t.Errorf("IsTemporary(%v) = true for wrong credentials", err)
		}
	}
}

func TestS3MissingBucket(t *testing.T) {
	cfg := s3Config(t)
	cfg.CreateBucket = false
	_, err := blob.NewS3(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), cfg.Bucket) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("NewS3 with a missing bucket: %v, want an error naming the bucket", err)
	}
	cfg.CreateBucket = true
	if _, err := blob.NewS3(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	// Creating is idempotent: a second node starting finds it.
	if _, err := blob.NewS3(context.Background(), cfg); err != nil {
		t.Fatalf("NewS3 on an existing bucket with CreateBucket: %v", err)
	}
}

// TestS3Unreachable points stores at a port where nothing listens.
func TestS3Unreachable(t *testing.T) {
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := s3Config(t)
	cfg.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg.MaxAttempts = 1
	_, err = blob.NewS3(context.Background(), cfg)
	if err == nil || !blob.IsTemporary(err) {
		t.Fatalf("NewS3 on a closed port: %v, want a temporary error", err)
	}
}

// TestS3ServerGoesAway reaches the real server through a TCP relay, then
// closes the relay: every operation must fail with a temporary error, as
// when the S3 server stops.
func TestS3ServerGoesAway(t *testing.T) {
	cfg := s3Config(t)
	relay := newRelay(t, cfg.Endpoint)
	cfg.Endpoint = relay.addr
	cfg.MaxAttempts = 1
	s, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	relay.close()
	checkTemporary(t, s)
}

// TestS3Stalled points a store at a server that accepts connections and
// never answers: operations fail with a temporary error once the timeout
// passes without progress.
func TestS3Stalled(t *testing.T) {
	cfg := s3Config(t)
	relay := newRelay(t, cfg.Endpoint)
	cfg.Endpoint = relay.addr
	cfg.MaxAttempts = 1
	cfg.Timeout = time.Second // long enough for NewS3 on a busy machine
	s, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	relay.stall()
	checkTemporary(t, s)
}

func checkTemporary(t *testing.T, s blob.Store) {
	t.Helper()
	ctx := context.Background()
	check := func(op string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s with the server gone: no error", op)
		} else if !blob.IsTemporary(err) {
			t.Errorf("%s with the server gone: IsTemporary(%v) = false", op, err)
		}
	}
	check("Put", s.Put(ctx, "k2", strings.NewReader("v"), 1))
	check("Put unknown size", s.Put(ctx, "k3", strings.NewReader("v"), -1))
	rc, err := s.Get(ctx, "k", 0, -1)
	if rc != nil {
		rc.Close()
	}
	check("Get", err)
	check("Delete", s.Delete(ctx, "k"))
	check("List", s.List(ctx, "", func(string, time.Time) error { return nil }))
	check("Ping", s.Ping(ctx))
}

// relay is a TCP relay to a real server that can be cut off or stalled.
type relay struct {
	addr    string
	ln      net.Listener
	mu      sync.Mutex
	conns   []net.Conn
	stalled bool
	wg      sync.WaitGroup
}

func newRelay(t *testing.T, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return relayFrom(t, ln, target)
}

// relayFrom relays the connections ln accepts to target.
func relayFrom(t *testing.T, ln net.Listener, target string) *relay {
	r := &relay{addr: ln.Addr().String(), ln: ln}
	r.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns = append(r.conns, c)
			stalled := r.stalled
			r.mu.Unlock()
			if stalled {
				continue // hold the connection open, never answer
			}
			r.wg.Go(func() {
				up, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				r.mu.Lock()
				r.conns = append(r.conns, up)
				r.mu.Unlock()
				go func() { io.Copy(up, c); up.Close() }()
				io.Copy(c, up)
				c.Close()
			})
		}
	})
	t.Cleanup(r.close)
	return r
}

// stall cuts the existing connections and makes new ones hang.
func (r *relay) stall() {
	r.mu.Lock()
	r.stalled = true
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// close stops listening and cuts every connection.
func (r *relay) close() {
	r.ln.Close()
	r.stall()
	r.wg.Wait()
	r.mu.Lock()
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// A Get reader stays usable while the object is replaced or deleted, and
// reads one version.
func TestReadDuringOverwrite(t *testing.T) {
	for name, newStore := range map[string]func(testing.TB) blob.Store{"FS": newFS, "S3": newS3} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			v1 := blobtest.Data(1, 3<<20)
			v2 := blobtest.Data(2, 3<<20)
			if err := s.Put(ctx, "k", bytes.NewReader(v1), int64(len(v1))); err != nil {
				t.Fatal(err)
			}
			rc, err := s.Get(ctx, "k", 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			head := make([]byte, 1000)
			if _, err := io.ReadFull(rc, head); err != nil {
				t.Fatal(err)
			}
			if err := s.Put(ctx, "k", bytes.NewReader(v2), int64(len(v2))); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			got := append(head, rest...)
			if !bytes.Equal(got, v1) && !bytes.Equal(got, v2) {
				t.Fatalf("reader saw a mix of versions (%d bytes)", len(got))
			}
		})
	}
}

// TestS3AbortsMultipart checks that a failed multipart Put leaves no
// incomplete upload (parts the bucket would keep paying for) behind.
func TestS3AbortsMultipart(t *testing.T) {
	cfg := s3Config(t)
	s, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("client went away")
	data := blobtest.Data(3, 12<<20)
	for _, size := range []int64{int64(len(data)), -1} {
		r := &failAfter{r: bytes.NewReader(data), n: 11 << 20, err: boom}
		if err := s.Put(context.Background(), "big", r, size); !errors.Is(err, boom) {
			t.Fatalf("Put(size %d) with a failing reader: %v, want %v", size, err, boom)
		}
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""), Region: cfg.Region})
	if err != nil {
		t.Fatal(err)
	}
	var uploads []string
	for u := range c.ListIncompleteUploads(context.Background(), cfg.Bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		uploads = append(uploads, u.Key+" "+u.UploadID)
	}
	if len(uploads) != 0 {
		t.Fatalf("incomplete uploads left after failed Puts: %q", uploads)
	}
}

// failAfter reads n bytes from r, then fails with err.
type failAfter struct {
	r   io.Reader
	n   int
	err error
}

func (f *failAfter) Read(b []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(b) > f.n {
		b = b[:f.n]
	}
	n, err := f.r.Read(b)
	f.n -= n
	return n, err
}

// TestS3TLS reaches the server through a TLS relay whose certificate is
// signed by a private CA: it works with that CA as CAFile and fails,
// not temporarily, without it.
func TestS3TLS(t *testing.T) {
	caPEM, cert := testCerts(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := s3Config(t)
	relay := relayFrom(t, ln, cfg.Endpoint)
	cfg.Endpoint = relay.addr
	cfg.UseTLS = true
	cfg.MaxAttempts = 1

	_, err = blob.NewS3(context.Background(), cfg)
	if err == nil {
		t.Fatal("NewS3 over TLS with an unknown CA: no error")
	}
	if blob.IsTemporary(err) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("NewS3 over TLS with an unknown CA: %v (temporary %v), want a permanent certificate error", err, blob.IsTemporary(err))
	}

	cfg.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(cfg.CAFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewS3 over TLS with CAFile: %v", err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "tls", strings.NewReader("secret"), 6); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "tls", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "secret" {
		t.Fatalf("Get over TLS: %q, %v", b, err)
	}
}

// testCerts returns a fresh CA certificate (PEM) and a server certificate
// for 127.0.0.1 signed by it.
func testCerts(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "blob test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return caPEM, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestS3SlowCaller checks that Timeout measures the server, not the
// caller: a Put reader and a Get reader that pause longer than Timeout
// still succeed.
func TestS3SlowCaller(t *testing.T) {
	cfg := s3Config(t)
	cfg.Timeout = time.Second
	s, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pause := 3 * cfg.Timeout / 2
	data := blobtest.Data(5, 12<<20) // above PartSize: multipart
	for _, size := range []int64{int64(len(data)), -1, 1000} {
		body := data
		if size == 1000 {
			body = data[:1000]
		}
		r := &pausingReader{r: bytes.NewReader(body), at: len(body) / 2, pause: pause}
		if err := s.Put(ctx, "slow", r, size); err != nil {
			t.Fatalf("Put(size %d) with a reader pausing for %s: %v", size, pause, err)
		}
	}
	rc, err := s.Get(ctx, "slow", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	time.Sleep(pause)
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get: reading after a pause of %s: %v", pause, err)
	}
	if !bytes.Equal(b, data[:1000]) {
		t.Fatalf("Get: got %d bytes, want the 1000 put last", len(b))
	}
}

// pausingReader sleeps once, after at bytes.
type pausingReader struct {
	r      io.Reader
	n, at  int
	pause  time.Duration
	paused bool
}

func (p *pausingReader) Read(b []byte) (int, error) {
	if p.n >= p.at && !p.paused {
		p.paused = true
		time.Sleep(p.pause)
	}
	if !p.paused && len(b) > p.at-p.n {
		b = b[:p.at-p.n]
	}
	n, err := p.r.Read(b)
	p.n += n
	return n, err
}
