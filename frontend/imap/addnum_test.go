package imap

import (
	"math/rand/v2"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// numRanges builds the same sets as AddNum, for ascending numbers (SEARCH
// results) and for any others (out of order, repeated).
func TestNumRangesMatchesAddNum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 500; n++ {
		var nums []uint32
		var want imap.SeqSet
		cur := uint32(0)
		for i := rng.IntN(50); i > 0; i-- {
			var x uint32
			if n%2 == 1 && rng.IntN(10) == 0 {
				x = 1 + rng.Uint32N(200)
			} else {
				cur += 1 + rng.Uint32N(3)
				x = cur
			}
			nums = append(nums, x)
			want.AddNum(x)
		}
		var got imap.SeqSet
		for _, r := range numRanges(nums) {
			got = append(got, imap.SeqRange{Start: r[0], Stop: r[1]})
		}
		if got.String() != want.String() {
			t.Fatalf("%v: numRanges %v, AddNum %v", nums, got, want)
		}
	}
}
