package imap

import (
	"flag"
	"strings"
	"testing"

	"mailcluster/internal/config"
)

func TestConfig(t *testing.T) {
	def := DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, s := range config.Describe(&def) {
		if !strings.HasPrefix(s.Flag, "imap-") || s.Help == "" {
			t.Errorf("setting %q: want an imap- name and help", s.Flag)
		}
	}
	cfg := DefaultConfig()
	err := config.Load(&cfg, flag.NewFlagSet("t", flag.ContinueOnError), []string{"-imap-max-append-size", "10M", "-imap-insecure-auth"}, func(string) string { return "" })
	if err != nil || cfg.MaxAppendSize != 10<<20 || !cfg.InsecureAuth {
		t.Fatalf("load: %v %+v", err, cfg)
	}
	for name, mod := range map[string]func(*Config){
		"imap-rpc-timeout":       func(c *Config) { c.RPCTimeout = 0 },
		"imap-max-append-size":   func(c *Config) { c.MaxAppendSize = 5 << 30 },
		"imap-max-search-depth":  func(c *Config) { c.MaxSearchDepth = 100 },
		"imap-fetch-batch":       func(c *Config) { c.FetchBatch = 0 },
		"imap-max-mailbox-name":  func(c *Config) { c.MaxMailboxName = 1 },
		"imap-max-auth-failures": func(c *Config) { c.MaxAuthFailures = 0 },
		"imap-watch-retry":       func(c *Config) { c.WatchRetry = -1 },
		"imap-envelope-cache":    func(c *Config) { c.EnvelopeCache = -1 },
		"imap-message-cache":     func(c *Config) { c.MessageCache = -1 },
		"imap-stream-timeout":    func(c *Config) { c.StreamTimeout = 0 },
	} {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := New(DefaultConfig(), Deps{}, nil); err == nil {
		t.Error("New without an authenticator and a router succeeded")
	}
}
