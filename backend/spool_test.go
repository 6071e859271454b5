package backend

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

func TestSpoolNormalisesLineEndings(t *testing.T) {
	cases := []struct {
		chunks []string
		want   string
	}{
		{[]string{"a\r\nb\r\n"}, "a\r\nb\r\n"},
		{[]string{"a\nb\n"}, "a\r\nb\r\n"},
		{[]string{"a\r", "\nb\n"}, "a\r\nb\r\n"},
		{[]string{"a\r", "b\n"}, "a\rb\r\n"},
		{[]string{"\n\n", "\r\n"}, "\r\n\r\n\r\n"},
		{[]string{"x\r\r\n"}, "x\r\r\n"},
		{[]string{"no newline"}, "no newline"},
	}
	for _, c := range cases {
		for _, memLimit := range []int64{1 << 20, 0} {
			sp := &spool{max: 1 << 20, memLimit: memLimit, dir: t.TempDir()}
			raw := 0
			for _, ch := range c.chunks {
				raw += len(ch)
				if n, err := sp.Write([]byte(ch)); err != nil || n != len(ch) {
					t.Fatalf("write %q: %d, %v", ch, n, err)
				}
			}
			got, _ := io.ReadAll(io.NewSectionReader(sp.ReaderAt(), 0, sp.size))
			if !bytes.Equal(got, []byte(c.want)) || sp.raw != int64(raw) {
				t.Errorf("%q (mem %d): stored %q (raw %d), want %q", c.chunks, memLimit, got, sp.raw, c.want)
			}
			sp.Close()
		}
	}
}

func TestSpoolSizeLimitCountsStoredOctets(t *testing.T) {
	sp := &spool{max: 5, memLimit: 100}
	if _, err := sp.Write([]byte("a\nb\n")); err != nil { // 6 octets stored
		if err != errTooBig {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("6 stored octets accepted with a 5-octet limit")
}

// Random streams of a, CR and LF in random chunks are stored as the
// definition says: every LF not preceded by CR in the stream gets one.
func TestSpoolMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 2000; n++ {
		in := make([]byte, rng.IntN(200))
		for i := range in {
			in[i] = "a\r\n"[rng.IntN(3)]
		}
		var want []byte
		for i, c := range in {
			if c == '\n' && (i == 0 || in[i-1] != '\r') {
				want = append(want, '\r')
			}
			want = append(want, c)
		}
		sp := &spool{max: 1 << 20, memLimit: 1 << 20}
		for rest := in; len(rest) > 0; {
			k := 1 + rng.IntN(len(rest))
			if _, err := sp.Write(rest[:k]); err != nil {
				t.Fatal(err)
			}
			rest = rest[k:]
		}
		got, _ := io.ReadAll(io.NewSectionReader(sp.ReaderAt(), 0, sp.size))
		if !bytes.Equal(got, want) || sp.raw != int64(len(in)) {
			t.Fatalf("%q: stored %q, want %q", in, got, want)
		}
		sp.Close()
	}
}
