package store

import (
	"strings"
	"testing"
)

func TestMatchPattern(t *testing.T) {
	cases := []struct {
		p, s string
		want bool
	}{
		{"*", "a/b/c", true},
		{"%", "a/b", false},
		{"%", "a", true},
		{"a/%", "a/b", true},
		{"a/%", "a/b/c", false},
		{"a/*", "a/b/c", true},
		{"inbox", "INBOX", true},
		{"Inbox/%", "INBOX/x", true},
		{"Inbox*", "INBOX", true},
		{"inbox*", "INBOX/sub", true},
		{"x*y", "xay", true},
		{"x*y", "xa", false},
		{"%/b", "a/b", true},
		{"", "", true},
		{"", "a", false},
		{strings.Repeat("*a", 200) + "b", strings.Repeat("a", 500), false},
	}
	for _, c := range cases {
		if got := MatchPattern(c.p, c.s); got != c.want {
			t.Errorf("MatchPattern(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	good := map[string]string{"inbox": "INBOX", "InBoX/Sub": "INBOX/Sub", "Work/2026": "Work/2026", "Ünïcødé": "Ünïcødé"}
	for in, want := range good {
		got, err := NormalizeName(in, 100, 5)
		if err != nil || got != want {
			t.Errorf("NormalizeName(%q) = %q, %v", in, got, err)
		}
	}
	bad := []string{"", "/a", "a/", "a//b", ".", "a/../b", "a/./b", "a*", "b%", "a\x00b", "a\x7fb", "\xff\xfe", strings.Repeat("x", 101), "a/b/c/d/e/f"}
	for _, in := range bad {
		if _, err := NormalizeName(in, 100, 5); !IsInvalid(err) {
			t.Errorf("NormalizeName(%q) err = %v, want invalid", in, err)
		}
	}
}
