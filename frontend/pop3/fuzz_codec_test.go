package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"RETR 1", "top 1 0", "PASS a b", "AUTH PLAIN =", "", "\x00", "USER \xff", "RETR -1", "RETR 99999999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c, err := ParseCommand(line)
		if err != nil {
			return
		}
		if len(c.Name) < 3 || len(c.Name) > 4 || strings.ToUpper(c.Name) != c.Name {
			t.Fatalf("bad name %q", c.Name)
		}
		if strings.ContainsAny(c.Rest, "\x00\r\n") {
			t.Fatalf("control characters in %q", c.Rest)
		}
		for _, a := range c.Args {
			if a == "" || strings.Contains(a, " ") {
				t.Fatalf("bad argument %q", a)
			}
		}
		for _, a := range c.Args {
			if n, ok := ParseNumber(a); ok && n < 0 {
				t.Fatalf("negative number from %q", a)
			}
		}
	})
}

func FuzzReadLine(f *testing.F) {
	f.Add([]byte("USER a\r\nPASS b\r\n"), uint8(16))
	f.Add([]byte("x\ny\r\n\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, max uint8) {
		limit := int(max) + 1
		r := bufio.NewReaderSize(bytes.NewReader(in), 16)
		var got [][]byte
		for {
			line, err := ReadLine(r, limit)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrLineTooLong) {
					t.Fatal(err)
				}
				break
			}
			if len(line)+1 > limit || bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("line %q over limit %d or with LF", line, limit)
			}
			got = append(got, line)
		}
		// What was read is a prefix of the input, line by line.
		rest := in
		for _, l := range got {
			if !bytes.HasPrefix(rest, l) {
				t.Fatalf("line %q not next in %q", l, rest)
			}
			rest = rest[len(l):]
			if bytes.HasPrefix(rest, []byte("\r\n")) {
				rest = rest[2:]
			} else if len(rest) > 0 && rest[0] == '\n' {
				rest = rest[1:]
			} else {
				t.Fatalf("no line ending after %q", l)
			}
		}
	})
}

func FuzzDotWriter(f *testing.F) {
	f.Add([]byte("a\r\n.\r\n..b\r\n"), uint8(1))
	f.Add([]byte(".\n.\r.\r\n"), uint8(2))
	f.Add([]byte("end without CRLF."), uint8(5))
	f.Fuzz(func(t *testing.T, body []byte, split uint8) {
		checkDot(t, body, int(split))
	})
}

func FuzzTopFilter(f *testing.F) {
	f.Add([]byte("a: b\r\n\r\nl1\r\n.l2\r\n"), uint8(1), uint8(3))
	f.Add([]byte("a: b\n\nl1\n"), uint8(0), uint8(1))
	f.Fuzz(func(t *testing.T, msg []byte, n, split uint8) {
		checkTop(t, msg, int(n), int(split))
	})
}

func FuzzDecodePlain(f *testing.F) {
	f.Add("AHVzZXIAcGFzcw==")
	f.Add("=")
	f.Fuzz(func(t *testing.T, s string) {
		z, c, p, err := DecodePlain(s)
		if err != nil {
			return
		}
		if c == "" || p == "" || strings.Contains(z+c+p, "\x00") {
			t.Fatalf("%q %q %q", z, c, p)
		}
	})
}
