package smtp

import (
	"bufio"
	"bytes"
	"io"
	"math/rand"
	"strings"
	"testing"
)

// longestLine is the longest line of msg (what a dataReader consumed, up
// to the end of data), counted as the bytes before its CRLF (a CR without
// LF is text), as sent: dots included.
func longestLine(msg string) int {
	longest := 0
	for _, l := range strings.Split(msg, "\r\n") {
		if len(l) > longest {
			longest = len(l)
		}
	}
	return longest
}

// With a text line limit (mailcluster), dataReader fails with
// ErrTooLongLine exactly when a line of the message is too long, after
// returning a prefix of what it returns without the limit; otherwise it
// returns the same.
func TestDataReaderLineLimit(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	alphabet := []string{"a", ".", "\r", "\n", "\r\n", "\r\n.", "\r\n..", "\r\n.\r", "xyz", strings.Repeat("q", 9)}
	for i := 0; i < 5000; i++ {
		var sb strings.Builder
		for j := rng.Intn(40); j > 0; j-- {
			sb.WriteString(alphabet[rng.Intn(len(alphabet))])
		}
		sb.WriteString("\r\n.\r\nTRAILER")
		in := sb.String()
		maxLine := 4 + rng.Intn(24)
		bufSize := 16 + rng.Intn(32)
		chunk := 1 + rng.Intn(20)

		plain := &dataReader{r: bufio.NewReaderSize(strings.NewReader(in), bufSize)}
		want, wantErr := readAllChunks(plain.Read, chunk)
		rest, _ := io.ReadAll(plain.r)
		msg := in[:len(in)-len(rest)]
		limited := &dataReader{r: bufio.NewReaderSize(strings.NewReader(in), bufSize), maxLine: maxLine}
		got, gotErr := readAllChunks(limited.Read, chunk)

		if longestLine(msg) > maxLine-2 {
			if gotErr != ErrTooLongLine || !bytes.HasPrefix(want, got) {
				t.Fatalf("input %q, limit %d: got %q %v, want a prefix of %q and ErrTooLongLine", in, maxLine, got, gotErr, want)
			}
			if _, err := limited.Read(make([]byte, 10)); err != ErrTooLongLine {
				t.Fatalf("input %q: error not sticky: %v", in, err)
			}
			continue
		}
		if !bytes.Equal(got, want) || gotErr != wantErr {
			t.Fatalf("input %q, limit %d: got %q %v, want %q %v", in, maxLine, got, gotErr, want, wantErr)
		}
	}
}
