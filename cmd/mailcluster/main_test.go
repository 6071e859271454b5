package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailcluster/backend"
	"mailcluster/frontend"
	"mailcluster/internal/config"
	"mailcluster/internal/devcluster"
)

// Every setting of every role is documented in the README.
func TestReadmeDocumentsEverySetting(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := backend.DefaultConfig()
	settings := config.Describe(&cfg)
	settings = append(settings, config.Describe(&logConfig{})...)
	dev := devcluster.DefaultConfig()
	settings = append(settings, config.Describe(&dev)...)
	fe := frontend.DefaultConfig()
	settings = append(settings, config.Describe(&fe)...)
	for _, s := range settings {
		if !bytes.Contains(readme, []byte("`"+s.Env+"`")) || !bytes.Contains(readme, []byte("`-"+s.Flag+"`")) {
			t.Errorf("README does not document %s (-%s)", s.Env, s.Flag)
		}
	}
}

func TestRunRejectsBadInvocations(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		{args: nil, code: 2, want: "usage"},
		{args: []string{"nosuchrole"}, code: 2, want: "unknown role"},
		{args: []string{"backend"}, code: 2, want: "postgres-dsn: is required"},
		{args: []string{"backend", "-blob-driver", "gcs", "-grpc-insecure", "-postgres-dsn", "x"}, code: 2, want: "blob-driver"},
		{args: []string{"backend", "-max-message-size", "lots"}, code: 2, want: "max-message-size"},
		{args: []string{"backend", "-grpc-insecure", "-postgres-dsn", "x", "-blob-driver", "fs", "-blob-fs-root", "/tmp", "-log-level", "loud"}, code: 2, want: "log-level"},
		{args: []string{"backend", "extra"}, code: 2, want: "unexpected arguments"},
		{args: []string{"backend"}, env: map[string]string{"MAILCLUSTER_UPLOAD_GRACE": "soon"}, code: 2, want: "MAILCLUSTER_UPLOAD_GRACE"},
	}
	for _, c := range cases {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", c.args, code, errb.String(), c.code, c.want)
		}
		for k := range c.env {
			os.Unsetenv(k)
		}
	}
}
