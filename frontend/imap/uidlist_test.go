package imap

import (
	"math/rand"
	"slices"
	"testing"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// The run-length UID list answers like a plain sorted slice.
func TestUIDList(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 200; round++ {
		var plain []uint32
		var l uidList
		u := uint32(0)
		for i := rng.Intn(300); i > 0; i-- {
			u += uint32(1 + rng.Intn(3)/2*rng.Intn(5))
			plain = append(plain, u)
			l.push(u)
		}
		if round%2 == 0 {
			l = uidListOf(uidSetOf(plain))
		}
		check := func() {
			t.Helper()
			if l.len() != uint32(len(plain)) {
				t.Fatalf("len %d, want %d", l.len(), len(plain))
			}
			for i, u := range plain {
				if l.at(uint32(i)) != u || l.seqOf(u) != uint32(i)+1 {
					t.Fatalf("uid %d at %d: at %d, seqOf %d", u, i, l.at(uint32(i)), l.seqOf(u))
				}
			}
			for probe := uint32(0); probe < u+3; probe++ {
				i, ok := slices.BinarySearch(plain, probe)
				if !ok && l.seqOf(probe) != 0 {
					t.Fatalf("seqOf(%d) = %d for a missing UID", probe, l.seqOf(probe))
				}
				if l.lowerBound(probe) != uint32(i) {
					t.Fatalf("lowerBound(%d) = %d, want %d", probe, l.lowerBound(probe), i)
				}
			}
			var seen []uint32
			l.each(func(i, u uint32) { seen = append(seen, u) })
			if !slices.Equal(seen, plain) {
				t.Fatalf("each gave %v, want %v", seen, plain)
			}
		}
		check()
		gone := map[uint32]bool{}
		for _, u := range plain {
			if rng.Intn(4) == 0 {
				gone[u] = true
			}
		}
		var wantPos []uint32
		var kept []uint32
		for i, u := range plain {
			if gone[u] {
				wantPos = append(wantPos, uint32(i)+1)
			} else {
				kept = append(kept, u)
			}
		}
		if got := l.removeIf(func(u uint32) bool { return gone[u] }); !slices.Equal(got, wantPos) {
			t.Fatalf("removed positions %v, want %v", got, wantPos)
		}
		plain = kept
		check()
	}
	if l := uidListOf(&mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: 1, End: 100000}}}); len(l.runs) != 1 || l.len() != 100000 {
		t.Fatalf("100,000 consecutive UIDs: %d runs", len(l.runs))
	}
}
