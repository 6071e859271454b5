package backend

import (
	"bytes"
	"io"
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
