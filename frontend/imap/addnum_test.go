package imap

import (
	"math/rand/v2"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// addSeq and addUID build the same sets as AddNum, for ascending numbers
// (SEARCH results) and for any others.
func TestAddSeqMatchesAddNum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 500; n++ {
		var fast, slow imap.SeqSet
		var fastU, slowU imap.UIDSet
		cur := uint32(0)
		for i := rng.IntN(50); i > 0; i-- {
			var x uint32
			if rng.IntN(10) == 0 {
				x = 1 + rng.Uint32N(200) // out of order, or a repeat
			} else {
				cur += 1 + rng.Uint32N(3)
				x = cur
			}
			fast, fastU = addSeq(fast, x), addUID(fastU, imap.UID(x))
			slow.AddNum(x)
			slowU.AddNum(imap.UID(x))
		}
		if fast.String() != slow.String() || fastU.String() != slowU.String() {
			t.Fatalf("addSeq %v / addUID %v, AddNum %v / %v", fast, fastU, slow, slowU)
		}
	}
}
