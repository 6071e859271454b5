package store

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Separator is the mailbox hierarchy separator.
const Separator = "/"

// NormalizeName validates a mailbox name and returns its canonical form:
// "INBOX" in any case becomes "INBOX" (also as the first component). Names
// must be valid UTF-8, non-empty, at most maxLen bytes and maxDepth levels,
// without empty, "." or ".." components, control characters or the IMAP
// wildcards "*" and "%".
func NormalizeName(name string, maxLen, maxDepth int) (string, error) {
	if name == "" {
		return "", invalid("mailbox name is empty")
	}
	if len(name) > maxLen {
		return "", invalid("mailbox name is longer than %d bytes", maxLen)
	}
	if !utf8.ValidString(name) {
		return "", invalid("mailbox name is not valid UTF-8")
	}
	parts := strings.Split(name, Separator)
	if len(parts) > maxDepth {
		return "", invalid("mailbox name has more than %d levels", maxDepth)
	}
	for _, p := range parts {
		switch p {
		case "":
			return "", invalid("mailbox name has an empty component")
		case ".", "..":
			return "", invalid("mailbox name has a %q component", p)
		}
		for _, r := range p {
			if r == '*' || r == '%' {
				return "", invalid("mailbox name contains a wildcard")
			}
			if unicode.IsControl(r) || r == utf8.RuneError {
				return "", invalid("mailbox name contains a control character")
			}
		}
	}
	if strings.EqualFold(parts[0], "INBOX") {
		parts[0] = "INBOX"
	}
	return strings.Join(parts, Separator), nil
}

// parents returns the names of all superiors of name, outermost first.
func parents(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == Separator[0] {
			out = append(out, name[:i])
		}
	}
	return out
}

// MatchPattern reports whether name matches an IMAP LIST pattern (RFC 3501
// section 6.3.8): "*" matches any sequence, "%" any sequence without the
// separator. INBOX matches case-insensitively.
func MatchPattern(pattern, name string) bool {
	// INBOX is case-insensitive (RFC 9051 section 5.1): a pattern that
	// starts with it in any case matches it.
	if len(pattern) >= 5 && strings.EqualFold(pattern[:5], "INBOX") {
		pattern = "INBOX" + pattern[5:]
	}
	return match(pattern, name)
}

// match is a dynamic-programming wildcard match: O(len(p)*len(s)) whatever
// the pattern, so hostile patterns such as "*a*a*a*a*b" cost no more.
func match(p, s string) bool {
	// cur[j] reports whether p[:i] matches s[:j].
	cur := make([]bool, len(s)+1)
	next := make([]bool, len(s)+1)
	cur[0] = true
	for i := 0; i < len(p); i++ {
		c := p[i]
		for j := range next {
			next[j] = false
		}
		switch c {
		case '*':
			seen := false
			for j := 0; j <= len(s); j++ {
				seen = seen || cur[j]
				next[j] = seen
			}
		case '%':
			seen := false
			for j := 0; j <= len(s); j++ {
				if j > 0 && s[j-1] == Separator[0] {
					seen = false
				}
				seen = seen || cur[j]
				next[j] = seen
			}
		default:
			for j := 1; j <= len(s); j++ {
				next[j] = cur[j-1] && s[j-1] == c
			}
		}
		cur, next = next, cur
	}
	return cur[len(s)]
}
