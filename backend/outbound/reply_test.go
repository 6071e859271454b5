package outbound

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"ok":                       "ok",
		"two\r\nlines\n":           "two lines",
		"  tabs\tand   spaces  ":   "tabs and spaces",
		"bell\x07 del\x7f":         "bell? del?",
		"caf\xc3\xa9 \xff":         "caf? ?",
		"\r\n\r\n":                 "",
		strings.Repeat("x", 600):   strings.Repeat("x", 500),
		strings.Repeat("ab ", 300): strings.TrimSpace(strings.Repeat("ab ", 167)),
	} {
		got := sanitize(in)
		if got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
		if len(got) > maxMessage {
			t.Errorf("sanitize(%q) is %d bytes", in, len(got))
		}
	}
}

func TestReplyOutcome(t *testing.T) {
	for _, tc := range []struct {
		err       smtp.SMTPError
		enhanced  string
		message   string
		permanent bool
	}{
		{smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}, "5.1.1", "no", true},
		{smtp.SMTPError{Code: 450, Message: "busy"}, "4.0.0", "busy", false},
		// A class that contradicts the reply is not believed.
		{smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "x"}, "4.0.0", "x", false},
		// The code on a later line only.
		{smtp.SMTPError{Code: 550, Message: "first\n5.7.1 second"}, "5.7.1", "first\nsecond", true},
		{smtp.SMTPError{Code: 250, Message: "huh"}, "4.5.0", "unexpected reply 250 huh", false},
	} {
		o := replyOutcome(&tc.err, "mx")
		if o.enhanced != tc.enhanced || o.message != tc.message || o.permanent != tc.permanent || o.code != tc.err.Code || o.remote != "mx" {
			t.Errorf("replyOutcome(%+v) = %+v", tc.err, o)
		}
	}
	if o := successOutcome("2.6.0 queued as 1234", "mx"); o.enhanced != "2.6.0" || o.message != "queued as 1234" || !o.delivered {
		t.Errorf("successOutcome = %+v", o)
	}
	if o := successOutcome("queued", "mx"); o.enhanced != "2.0.0" || o.message != "queued" {
		t.Errorf("successOutcome = %+v", o)
	}
}

func TestASCIIDomain(t *testing.T) {
	for in, want := range map[string]string{
		"Example.TEST.":      "example.test",
		"bücher.test":        "xn--bcher-kva.test",
		"[192.0.2.1]":        "[192.0.2.1]",
		"[IPv6:2001:db8::1]": "[IPv6:2001:db8::1]",
		"":                   "",
		"a..b":               "",
		"-a.test":            "",
		"a b.test":           "",
		"[300.1.1.1]":        "",
		"[IPv6:1.2.3.4]":     "",
	} {
		got, err := asciiDomain(in)
		if want == "" && err == nil {
			t.Errorf("asciiDomain(%q) = %q, want an error", in, got)
		} else if want != "" && got != want {
			t.Errorf("asciiDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
