package imap

import (
	"testing"
	"time"
)

func TestParseDate(t *testing.T) {
	want := time.Date(2006, 1, 2, 15, 4, 5, 0, time.FixedZone("", -7*3600))
	for _, s := range []string{
		"Mon, 02 Jan 2006 15:04:05 -0700", "Mon, 2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 -0700",
		"  Mon, 02 Jan 2006 15:04:05 -0700 (MST)", "Mon, 2 Jan 2006 15:04:05 -0700 (MST)",
	} {
		if got := parseDate(s); !got.Equal(want) {
			t.Errorf("%q: %v", s, got)
		}
	}
	for _, s := range []string{"", "yesterday", "Mon, 32 Jan 2006 15:04:05 -0700"} {
		if got := parseDate(s); !got.IsZero() {
			t.Errorf("%q: %v", s, got)
		}
	}
}

func BenchmarkParseDate(b *testing.B) {
	for i := 0; i < b.N; i++ {
		parseDate("Mon, 02 Jan 2006 15:04:05 +0000")
	}
}
