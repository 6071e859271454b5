package dsn

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// cleanText makes s one line of printable UTF-8 at most max octets long:
// invalid UTF-8 becomes U+FFFD; CR, LF, NUL and every other non-printable
// rune (controls, format characters such as bidi overrides, line and
// paragraph separators, non-ASCII spaces) become a space; runs of spaces
// collapse to one; the ends are trimmed. A longer result is cut at a rune
// boundary and ends in "...".
func cleanText(s string, max int) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == ' ' || !unicode.IsPrint(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r) // invalid UTF-8 arrived as utf8.RuneError, written as U+FFFD
		if b.Len() > max {
			break
		}
	}
	return truncate(b.String(), max)
}

// truncate cuts s to at most limit octets at a rune boundary, marking a cut
// with "...".
func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	const mark = "..."
	cut := max(0, limit-len(mark))
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.TrimRight(s[:cut], " ") + mark
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// embeddedUnicode is RFC 6533 §3 EmbeddedUnicodeChar: \x{HEXPOINT}, upper
// case hex, at least two digits, no leading zeros beyond that.
func embeddedUnicode(r rune) string {
	return fmt.Sprintf(`\x{%02X}`, r)
}

// asciiEscape writes the non-ASCII runes of s (cleaned text) as
// EmbeddedUnicodeChar escapes and caps the result at max octets without
// splitting an escape, marking a cut with "...".
func asciiEscape(s string, max int) string {
	return escape(s, max, func(r rune) bool { return r < utf8.RuneSelf })
}

// utf8AddrXtext is RFC 6533 §3 utf-8-addr-xtext: QCHAR (printable ASCII
// but "+", "=", "\" and space) as is, anything else escaped.
func utf8AddrXtext(s string, max int) string {
	return escape(s, max, func(r rune) bool {
		return r > ' ' && r < 0x7f && r != '+' && r != '=' && r != '\\'
	})
}

func escape(s string, max int, keep func(rune) bool) string {
	const mark = "..."
	var b strings.Builder
	cut := -1 // where to cut if s does not fit: the last point "..." fits after
	for _, r := range s {
		piece := string(r)
		if !keep(r) {
			piece = embeddedUnicode(r)
		}
		if cut < 0 && b.Len()+len(piece) > max-len(mark) {
			cut = b.Len()
		}
		b.WriteString(piece)
		if b.Len() > max {
			return b.String()[:cut] + mark
		}
	}
	return b.String()
}
