package smtp

import (
	"bufio"
	"bytes"
	"io"
	"math/rand"
	"strings"
	"testing"
)

// referenceRead is upstream's byte-by-byte dataReader.Read, kept to check
// that the fast path (mailcluster) returns the same bytes and errors.
func referenceRead(r *bufio.Reader, state *int, b []byte) (n int, err error) {
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
		stateEOF
	)
	for n < len(b) && *state != stateEOF {
		var c byte
		c, err = r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		switch *state {
		case stateBeginLine:
			if c == '.' {
				*state = stateDot
				continue
			}
			if c == '\r' {
				*state = stateCR
				break
			}
			*state = stateData
		case stateDot:
			if c == '\r' {
				*state = stateDotCR
				continue
			}
			*state = stateData
		case stateDotCR:
			if c == '\n' {
				*state = stateEOF
				continue
			}
			*state = stateData
		case stateCR:
			if c == '\n' {
				*state = stateBeginLine
				break
			}
			*state = stateData
		case stateData:
			if c == '\r' {
				*state = stateCR
			}
		}
		b[n] = c
		n++
	}
	if err == nil && *state == stateEOF {
		err = io.EOF
	}
	return
}

func readAllChunks(read func([]byte) (int, error), chunk int) ([]byte, error) {
	var out []byte
	buf := make([]byte, chunk)
	for {
		n, err := read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

// The fast path gives what the byte-by-byte reader gives, for random
// messages full of dots, CRs and LFs, with tiny buffers and read sizes so
// that every boundary falls everywhere.
func TestDataReaderFastPathMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alphabet := []string{"a", "b", ".", "\r", "\n", "\r\n", "\r\n.", "\r\n..", "\r\n.\r", ".\r\n", "xyz", strings.Repeat("q", 40)}
	for i := 0; i < 3000; i++ {
		var sb strings.Builder
		for j := rng.Intn(60); j > 0; j-- {
			sb.WriteString(alphabet[rng.Intn(len(alphabet))])
		}
		if rng.Intn(4) > 0 {
			sb.WriteString("\r\n.\r\n")
		}
		sb.WriteString("TRAILER")
		in := sb.String()
		bufSize := 16 + rng.Intn(32)
		chunk := 1 + rng.Intn(20)

		state := 0
		ref := bufio.NewReaderSize(strings.NewReader(in), bufSize)
		want, wantErr := readAllChunks(func(b []byte) (int, error) { return referenceRead(ref, &state, b) }, chunk)

		fast := &dataReader{r: bufio.NewReaderSize(strings.NewReader(in), bufSize)}
		got, gotErr := readAllChunks(fast.Read, chunk)
		if !bytes.Equal(got, want) || gotErr != wantErr {
			t.Fatalf("input %q (buffer %d, reads of %d):\ngot  %q %v\nwant %q %v", in, bufSize, chunk, got, gotErr, want, wantErr)
		}
		if wantErr == io.EOF {
			rest1, _ := io.ReadAll(ref)
			rest2, _ := io.ReadAll(fast.r)
			if !bytes.Equal(rest1, rest2) {
				t.Fatalf("input %q: left %q, want %q", in, rest2, rest1)
			}
		}
	}
}

// lineLimitReader with bytes.IndexByte (mailcluster) fails exactly where
// upstream's byte loop failed.
func TestLineLimitReaderMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 3000; i++ {
		var sb strings.Builder
		for j := rng.Intn(30); j > 0; j-- {
			sb.WriteString(strings.Repeat("x", rng.Intn(12)))
			sb.WriteString("\n")
		}
		sb.WriteString(strings.Repeat("y", rng.Intn(12)))
		in := sb.String()
		limit := 1 + rng.Intn(10)
		chunk := 1 + rng.Intn(8)

		// Upstream's loop.
		refErrAt := -1
		cur := 0
		for k, c := range []byte(in) {
			if c == '\n' {
				cur = 0
			}
			cur++
			if cur > limit {
				refErrAt = k
				break
			}
		}
		r := &lineLimitReader{R: strings.NewReader(in), LineLimit: limit}
		read := 0
		var err error
		buf := make([]byte, chunk)
		for {
			var n int
			n, err = r.Read(buf)
			if err != nil {
				break
			}
			read += n
		}
		if refErrAt < 0 {
			if err != io.EOF || read != len(in) {
				t.Fatalf("%q limit %d: read %d, err %v; want all and EOF", in, limit, read, err)
			}
			continue
		}
		// The failing chunk is the one holding byte refErrAt.
		if err != ErrTooLongLine || read > refErrAt || read+chunk <= refErrAt {
			t.Fatalf("%q limit %d chunk %d: failed after %d bytes with %v; want ErrTooLongLine in the chunk holding byte %d", in, limit, chunk, read, err, refErrAt)
		}
		if _, err := r.Read(buf); err != ErrTooLongLine {
			t.Fatalf("%q: not sticky: %v", in, err)
		}
	}
}
