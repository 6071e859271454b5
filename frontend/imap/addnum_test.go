package imap

import (
	"math/rand/v2"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// addRange builds the same sets as AddNum from ascending numbers (SEARCH
// results), repeated ones included.
func TestAddRangeMatchesAddNum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 500; n++ {
		var nums []uint32
		var want imap.SeqSet
		cur := uint32(0)
		for i := rng.IntN(50); i > 0; i-- {
			var x uint32
			if n%2 == 1 && rng.IntN(10) == 0 && cur > 0 {
				x = cur // repeated
			} else {
				cur += 1 + rng.Uint32N(3)
				x = cur
			}
			nums = append(nums, x)
			want.AddNum(x)
		}
		var ranges [][2]uint32
		for _, x := range nums {
			ranges = addRange(ranges, x)
		}
		var got imap.SeqSet
		for _, r := range ranges {
			got = append(got, imap.SeqRange{Start: r[0], Stop: r[1]})
		}
		if got.String() != want.String() {
			t.Fatalf("%v: addRange %v, AddNum %v", nums, got, want)
		}
	}
}
