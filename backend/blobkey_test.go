package backend

import (
	"regexp"
	"testing"
	"time"
)

// Blob keys are grouped by day and spread over 256 prefixes within it.
func TestNewBlobKey(t *testing.T) {
	now := time.Date(2026, 11, 25, 23, 59, 0, 0, time.FixedZone("", -3600))
	re := regexp.MustCompile(`^m/2026/11/26/([0-9a-f]{2})/([0-9a-f]{32})$`)
	prefixes := map[string]bool{}
	seen := map[string]bool{}
	for range 2000 {
		k := newBlobKey(now)
		m := re.FindStringSubmatch(k)
		if m == nil || m[2][:2] != m[1] {
			t.Fatalf("key %q", k)
		}
		if seen[k] {
			t.Fatalf("key %q twice", k)
		}
		seen[k] = true
		prefixes[m[1]] = true
	}
	if len(prefixes) < 200 {
		t.Errorf("2000 keys use only %d prefixes", len(prefixes))
	}
}
