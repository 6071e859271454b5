package frontend

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Backends = []string{"b1=127.0.0.1:7070"}
	ok.BackendToken = "t"
	ok.SubmissionListen, ok.SubmissionsListen = "", ""
	ok.IMAPListen, ok.IMAPSListen, ok.POP3Listen, ok.POP3SListen = "", "", "", ""
	ok.Directory.BaseDN = "dc=example,dc=test"
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cases := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Backends = nil }, "backends: at least one"},
		{func(c *Config) { c.Backends = []string{"b1"} }, "backends:"},
		{func(c *Config) { c.BackendToken = "" }, "backend-token:"},
		{func(c *Config) { c.SubmissionListen = ":587" }, "submission-listen: AUTH is only offered after STARTTLS"},
		{func(c *Config) { c.SubmissionsListen = ":465" }, "submissions-listen: implicit TLS"},
		{func(c *Config) { c.TLSCert = "/nonexistent.pem" }, "tls-cert"},
		{func(c *Config) { c.ProxyProtocol = []string{"lmtp"}; c.ProxyNetworks = []string{"10.0.0.0/8"} }, "proxy-protocol:"},
		{func(c *Config) { c.ProxyProtocol = []string{"smtp"} }, "proxy-networks: proxy-protocol needs"},
		{func(c *Config) { c.ProxyNetworks = []string{"not-a-net"} }, "proxy-networks:"},
		{func(c *Config) { c.SMTP.MaxLineLength = 100 }, "smtp-max-line-length"},
		{func(c *Config) { c.SMTP.MaxHops = 0 }, "smtp-max-hops"},
		{func(c *Config) { c.SMTP.MaxMessageSize = 0 }, "smtp-max-message-size"},
		{func(c *Config) { c.MaxConnsPerIP = 0 }, "max-connections-per-ip"},
		{func(c *Config) { c.SMTPListen = "" }, "smtp-listen: no listener"},
		{func(c *Config) { c.Directory.Preset = "x" }, "ldap-preset"},
		{func(c *Config) { c.IMAPSListen = ":993" }, "imaps-listen: implicit TLS"},
		{func(c *Config) { c.POP3Listen = ":110" }, "pop3-listen: logins are only allowed after STLS"},
		{func(c *Config) { c.IMAPListen = ":143" }, "imap-listen: LOGIN is only allowed after STARTTLS"},
	}
	for _, tc := range cases {
		c := ok
		c.Directory = ok.Directory
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
}
