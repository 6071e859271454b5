package smtpserver

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestScanner(t *testing.T) {
	long := strings.Repeat("x", 999)
	cases := []struct {
		in   []string // chunks
		want *smtp.SMTPError
	}{
		{[]string{"Subject: a\r\n\r\nbody\r\n"}, nil},
		{[]string{"Subject: a\r", "\n\r\nbody\r\n"}, nil},
		{[]string{"Subject: a\r\n\r\nbo\ndy\r\n"}, errBareNewline},
		{[]string{"Subject: a\r\n\r\nbody\rx\r\n"}, errBareNewline},
		{[]string{"Subject: a\r\n\r\nbody\r"}, errBareNewline}, // at the end (finish)
		{[]string{"Subject: a\r\n\r\nbody\r", "x"}, errBareNewline},
		{[]string{"Subject: a\r\n\r\nb\x00dy\r\n"}, errNUL},
		{[]string{"X: " + long + "\r\n\r\n"}, errHeaderLine},
		{[]string{"X: a\r\n\r\n" + long + "\r\n"}, errLineTooLong},
		{[]string{"X: a\r\n\r\n" + long[:500], long[:498] + "\r\n"}, nil},
		{[]string{"X: a\r\n\r\n" + long[:500], long[:499] + "\r\n"}, errLineTooLong},
	}
	for i, c := range cases {
		sc := scanner{maxLine: 1000, inHeader: true}
		var got *smtp.SMTPError
		for _, ch := range c.in {
			if got = sc.scan([]byte(ch)); got != nil {
				break
			}
		}
		if got == nil {
			got = sc.finish()
		}
		if got != c.want {
			t.Errorf("case %d: got %v, want %v", i, got, c.want)
		}
	}
}

func FuzzScanner(f *testing.F) {
	f.Add([]byte("Subject: a\r\n\r\nbody\r\n"), 3)
	f.Fuzz(func(t *testing.T, in []byte, split int) {
		// Splitting the input into chunks never changes the verdict.
		whole := scanner{maxLine: 100, inHeader: true}
		w := whole.scan(in)
		if w == nil {
			w = whole.finish()
		}
		if split < 0 {
			split = -split
		}
		split %= len(in) + 1
		parts := scanner{maxLine: 100, inHeader: true}
		p := parts.scan(in[:split])
		if p == nil {
			p = parts.scan(in[split:])
		}
		if p == nil {
			p = parts.finish()
		}
		if (w == nil) != (p == nil) {
			t.Fatalf("whole %v, split at %d %v", w, split, p)
		}
	})
}
