package frontend

import (
	"strings"
	"testing"
)

// The SMTP command line, VRFY and EXPN settings: defaults and refused
// values.
func TestSMTPCommandSettings(t *testing.T) {
	d := DefaultConfig()
	if d.SMTP.MaxCommandLine != 512 || d.SMTP.Vrfy || d.SMTP.Expn || d.SMTP.MaxVrfy != 20 {
		t.Fatalf("defaults: %+v", d.SMTP)
	}
	ok := d
	ok.Backends = []string{"b1=127.0.0.1:7070"}
	ok.BackendToken = "t"
	ok.SubmissionListen, ok.SubmissionsListen = "", ""
	ok.IMAPListen, ok.IMAPSListen, ok.POP3Listen, ok.POP3SListen = "", "", "", ""
	ok.Directory.BaseDN = "dc=example,dc=test"
	ok.SMTP.Vrfy, ok.SMTP.Expn, ok.SMTP.MaxVrfy = true, true, 0
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.SMTP.MaxCommandLine = 511 }, "smtp-max-command-line: must be at least 512"},
		{func(c *Config) { c.SMTP.MaxCommandLine = 0 }, "smtp-max-command-line"},
		{func(c *Config) { c.SMTP.MaxVrfy = -1 }, "smtp-max-vrfy: must not be negative"},
	} {
		c := ok
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
}
