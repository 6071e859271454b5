package message

import (
	"bytes"
	"testing"
)

// fuzzSeeds are the messages of the table tests plus shapes the fuzzer
// would take long to find.
func fuzzSeeds() []string {
	return []string{
		"", "\n", "\r\n\r\n", "Subject: x", simple, crlf(simple), alternative, crlf(alternative),
		nested(12, true), nested(12, false),
		crlf("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\n1\n--d--\n"),
		crlf("Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\n\ninner\n--o\n\nsecond\n--o--\n"),
		crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\n--b--\n"),
		"To: A Group: a@x.example, \"B\" <b@y.example>; c@z.example, =?utf-8?q?a:b?= <q@r>\r\n\r\n",
	}
}

// FuzzParse checks that Parse never panics or fails on input it can read,
// that its result keeps the documented invariants, with default and with tight
// options, and that it does not depend on the scanner's window size.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, opts := range []Options{{}, {MaxSearchText: 7, MaxDepth: 3, MaxParts: 4}} {
			p, err := Parse(bytes.NewReader(in), int64(len(in)), opts)
			if err != nil {
				t.Fatalf("Parse(%q): %v", in, err)
			}
			for _, v := range checkInvariants(in, p, opts) {
				t.Errorf("Parse(%q): %s", in, v)
			}
			for _, window := range []int{1, 7, 100} {
				if diff := windowDiff(bytes.NewReader(in), int64(len(in)), opts, p, window); diff != "" {
					t.Errorf("Parse(%q), window %d: %s", in, window, diff)
				}
			}
		}
	})
}
