package imapwire

import (
	"bufio"
	"strings"
	"testing"
)

// A command refused right after a literal must not leave the rest of its
// line to be read as the next command.
func TestDiscardLineAfterLiteral(t *testing.T) {
	dec := NewDecoder(bufio.NewReader(strings.NewReader("{3+}\r\nabc junk)\r\nnext\r\n")), ConnSideServer)
	var s string
	if !dec.String(&s) || s != "abc" {
		t.Fatalf("String() = %q, %v", s, dec.Err())
	}
	dec.DiscardLine()
	var atom string
	if !dec.ExpectAtom(&atom) || atom != "next" {
		t.Fatalf("after DiscardLine: %q, %v", atom, dec.Err())
	}
}
