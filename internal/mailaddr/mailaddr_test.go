package mailaddr

import (
	"strings"
	"testing"
)

func TestQueueable(t *testing.T) {
	for addr, want := range map[string]bool{
		"bob@example.test":                  true,
		"zoë@exämple.test":                  true,
		"a@b":                               true,
		"":                                  false,
		"no-at-sign":                        false,
		"@example.test":                     false,
		"bob@":                              false,
		"a b@example.test":                  false,
		"bob@example.test\r\nRCPT TO:<x@y>": false,
		"bob\x00@example.test":              false,
		"bob\x7f@example.test":              false,
		strings.Repeat("a", 243) + "@example.test": true,
		strings.Repeat("a", 244) + "@example.test": false,
	} {
		if got := Queueable(addr); got != want {
			t.Errorf("Queueable(%q) = %v, want %v", addr, got, want)
		}
	}
}
