package pop3

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadLine(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader("USER a\r\nPASS b\nNOOP\r\n"+strings.Repeat("x", 100)+"\r\nlast"), 16)
	for _, want := range []string{"USER a", "PASS b", "NOOP"} {
		got, err := ReadLine(r, 64)
		if err != nil || string(got) != want {
			t.Fatalf("ReadLine = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := ReadLine(r, 64); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("long line: %v", err)
	}
	r = bufio.NewReader(strings.NewReader("partial"))
	if _, err := ReadLine(r, 64); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("partial line: %v", err)
	}
	if _, err := ReadLine(bufio.NewReader(strings.NewReader("")), 64); err != io.EOF {
		t.Fatalf("empty input: %v", err)
	}
	// The limit includes CRLF.
	if _, err := ReadLine(bufio.NewReader(strings.NewReader("abcd\r\n")), 6); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLine(bufio.NewReader(strings.NewReader("abcde\r\n")), 6); !errors.Is(err, ErrLineTooLong) {
		t.Fatal(err)
	}
}

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line, name, rest string
		args             []string
		bad              bool
	}{
		{line: "retr 1", name: "RETR", rest: "1", args: []string{"1"}},
		{line: "TOP 1  10", name: "TOP", rest: "1  10", args: []string{"1", "10"}},
		{line: "PASS  pass word ", name: "PASS", rest: " pass word ", args: []string{"pass", "word"}},
		{line: "CAPA", name: "CAPA"},
		{line: "QUIT ", name: "QUIT", rest: ""},
		{line: "", bad: true},
		{line: " USER x", bad: true},
		{line: "US", bad: true},
		{line: "RETRR 1", bad: true},
		{line: "RE1R 1", bad: true},
		{line: "USER a\x00b", bad: true},
		{line: "USER a\tb", bad: true},
		{line: "USER \xffx", name: "USER", rest: "\xffx", args: []string{"\xffx"}},
	} {
		c, err := ParseCommand([]byte(tc.line))
		if tc.bad {
			if err == nil {
				t.Errorf("%q: parsed as %+v", tc.line, c)
			}
			continue
		}
		if err != nil || c.Name != tc.name || c.Rest != tc.rest || strings.Join(c.Args, "|") != strings.Join(tc.args, "|") {
			t.Errorf("%q: got %+v, %v", tc.line, c, err)
		}
	}
}

func TestParseNumber(t *testing.T) {
	for s, want := range map[string]int{"0": 0, "1": 1, "007": 7, "99999999": 99999999, "999999999": 999999999} {
		if n, ok := ParseNumber(s); !ok || n != want {
			t.Errorf("%q: %d %v", s, n, ok)
		}
	}
	for _, s := range []string{"", "-1", "+1", "1a", " 1", "1000000000", "0x10", "１"} {
		if n, ok := ParseNumber(s); ok {
			t.Errorf("%q accepted as %d", s, n)
		}
	}
}

func TestResponses(t *testing.T) {
	if got := string(AppendOK(nil, "2 320")); got != "+OK 2 320\r\n" {
		t.Error(got)
	}
	if got := string(AppendOK(nil, "")); got != "+OK\r\n" {
		t.Error(got)
	}
	if got := string(AppendErr(nil, CodeSysTemp, "try\r\nlater")); got != "-ERR [SYS/TEMP] try??later\r\n" {
		t.Error(got)
	}
	if got := string(AppendErr(nil, CodeNone, "no")); got != "-ERR no\r\n" {
		t.Error(got)
	}
}

// unstuff is the client's side of RFC 1939 section 3: it reads a multi-line
// response body from out and returns the message and what follows the
// terminator.
func unstuff(t testing.TB, out []byte) (msg, after []byte) {
	t.Helper()
	for len(out) > 0 {
		i := bytes.IndexByte(out, '\n')
		if i < 0 {
			t.Fatalf("unterminated response, left %q", out)
		}
		line := out[:i+1]
		out = out[i+1:]
		if string(line) == ".\r\n" {
			return msg, out
		}
		if line[0] == '.' {
			line = line[1:]
		}
		msg = append(msg, line...)
	}
	t.Fatal("no terminator")
	return nil, nil
}

// wantOnWire is what a client receives for a stored body: the body itself,
// plus CRLF if it does not end with LF.
func wantOnWire(body []byte) []byte {
	if len(body) > 0 && body[len(body)-1] == '\n' {
		return body
	}
	if len(body) == 0 {
		return nil
	}
	return append(append([]byte(nil), body...), "\r\n"...)
}

func checkDot(t testing.TB, body []byte, split int) {
	var out bytes.Buffer
	d := NewDotWriter(&out)
	rest := body
	for len(rest) > 0 {
		n := min(max(split, 1), len(rest))
		if m, err := d.Write(rest[:n]); err != nil || m != n {
			t.Fatalf("Write = %d, %v", m, err)
		}
		rest = rest[n:]
	}
	if d.Written() != int64(len(body)) {
		t.Fatalf("Written %d, want %d", d.Written(), len(body))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	msg, after := unstuff(t, out.Bytes())
	if len(after) != 0 {
		t.Fatalf("terminator before the end: %q after it", after)
	}
	if !bytes.Equal(msg, wantOnWire(body)) {
		t.Fatalf("round trip of %q (split %d): got %q", body, split, msg)
	}
}

func TestDotWriter(t *testing.T) {
	for _, body := range []string{
		"", "a", ".", "..", ".\r\n", "a\r\n.\r\n", "a\r\n.\r\nb", "a\n.\nb\n",
		"Subject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\n", "\xff\xfe 8-bit\r\n", "no final line ending",
	} {
		for _, split := range []int{1, 2, 3, 1000} {
			checkDot(t, []byte(body), split)
		}
	}
	var out bytes.Buffer
	d := NewDotWriter(&out)
	io.WriteString(d, "A\r\n.B\r\n.\r\n")
	d.Close()
	if got := out.String(); got != "A\r\n..B\r\n..\r\n.\r\n" {
		t.Fatalf("%q", got)
	}
}

// topRef is the obvious implementation of TOP's cut on a whole message.
func topRef(msg []byte, n int) []byte {
	lines := bytes.SplitAfter(msg, []byte{'\n'})
	var out []byte
	i := 0
	for ; i < len(lines); i++ {
		out = append(out, lines[i]...)
		l := lines[i]
		if string(l) == "\r\n" || string(l) == "\n" {
			i++
			break
		}
	}
	for ; i < len(lines) && n > 0; i, n = i+1, n-1 {
		out = append(out, lines[i]...)
	}
	return out
}

func checkTop(t testing.TB, msg []byte, n, split int) {
	var out bytes.Buffer
	f := NewTopFilter(&out, n)
	rest := msg
	for len(rest) > 0 && !f.Done() {
		k := min(max(split, 1), len(rest))
		if m, err := f.Write(rest[:k]); err != nil || m != k {
			t.Fatalf("Write = %d, %v", m, err)
		}
		rest = rest[k:]
	}
	if want := topRef(msg, n); !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("TOP %d of %q (split %d): got %q, want %q", n, msg, split, out.Bytes(), want)
	}
}

func TestTopFilter(t *testing.T) {
	msg := "From: a\r\nSubject: b\r\n\r\nline1\r\n.line2\r\nline3\r\n"
	for _, n := range []int{0, 1, 2, 3, 4, 100} {
		for _, split := range []int{1, 2, 5, 1000} {
			checkTop(t, []byte(msg), n, split)
			checkTop(t, []byte(strings.ReplaceAll(msg, "\r\n", "\n")), n, split)
		}
	}
	checkTop(t, []byte("only: header\r\nno end"), 0, 3)
	checkTop(t, []byte("\r\nbody first\r\n"), 0, 1)
	checkTop(t, []byte("h: x\r\r\n\r\nb\r\n"), 1, 1)
	var out bytes.Buffer
	f := NewTopFilter(&out, 1)
	io.WriteString(f, msg)
	if got := out.String(); got != "From: a\r\nSubject: b\r\n\r\nline1\r\n" || !f.Done() {
		t.Fatalf("%q %v", got, f.Done())
	}
}

func TestDecodePlain(t *testing.T) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	z, c, p, err := DecodePlain(enc("\x00user@example.test\x00pass word"))
	if err != nil || z != "" || c != "user@example.test" || p != "pass word" {
		t.Fatal(z, c, p, err)
	}
	for _, bad := range []string{"", "=", "!!!", enc("user\x00pass"), enc("\x00\x00pass"), enc("\x00user\x00"), enc("a\x00b\x00c\x00d")} {
		if _, _, _, err := DecodePlain(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
