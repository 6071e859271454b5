package directory_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"mailcluster/directory"
)

// FuzzNormalize: Normalize never panics; what it accepts is UTF-8 without
// control characters, has a lower-case domain, and normalises to itself.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"alice@example.test", "Alice+Tag@EXAMPLE.test.", "\"a b\"@x", "a@b@c", "*)(uid=*@x",
		"a\x00@x", "@", "a@", "@b", "ü@bücher.example", strings.Repeat("a", 300) + "@x"} {
		f.Add(s)
	}
	cfg := directory.DefaultConfig()
	cfg.BaseDN = "dc=example,dc=test"
	d, err := directory.New(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := d.Normalize(s)
		if err != nil {
			if !errors.Is(err, directory.ErrInvalidAddress) {
				t.Fatalf("Normalize(%q): %v, not ErrInvalidAddress", s, err)
			}
			return
		}
		out := a.String()
		if !utf8.ValidString(out) || a.Local == "" || a.Domain == "" || a.Domain != strings.ToLower(a.Domain) {
			t.Fatalf("Normalize(%q) = %q", s, out)
		}
		for _, r := range out {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("Normalize(%q) = %q has a control character", s, out)
			}
		}
		again, err := d.Normalize(out)
		if err != nil || again != a {
			t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", s, out, out, again.String(), err)
		}
	})
}
