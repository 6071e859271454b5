package message

import (
	"net/mail"
	"strings"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Placeholders for the parts of an address that the header does not give, as
// Dovecot fills them in IMAP envelopes: an address with an empty host would
// read as a group marker on the wire (RFC 3501 §7.4.2).
const (
	missingMailbox = "MISSING_MAILBOX"
	missingDomain  = "MISSING_DOMAIN"
)

var addrParser = &mail.AddressParser{WordDecoder: wordDecoder}

// parseAddressList parses an address-list header value (RFC 5322 §3.4) into
// envelope addresses. Groups ("name: a@b, c@d;") become a group_start marker
// carrying the group name, the members, and a group_end marker. It never
// fails: a mailbox that net/mail rejects is parsed leniently, and empty
// entries are skipped.
//
// net/mail's list parser is not used on the whole value because it flattens
// groups and rejects the entire list for one bad entry.
func parseAddressList(v string) []*mailboxv1.Address {
	if v == "" {
		return nil
	}
	var out []*mailboxv1.Address
	inGroup := false
	start := 0
	flush := func(end int) {
		if a := parseMailbox(strings.TrimSpace(v[start:end])); a != nil {
			out = append(out, a)
		}
	}
	inQ, inAngle, comment := false, false, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inQ:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQ = false
			}
		case comment > 0:
			switch c {
			case '\\':
				i++
			case '(':
				comment++
			case ')':
				comment--
			}
		case c == '"':
			inQ = true
		case c == '(':
			comment = 1
		case inAngle:
			if c == '>' {
				inAngle = false
			}
		case c == '<':
			inAngle = true
		case c == '=' && i+1 < len(v) && v[i+1] == '?':
			// An encoded-word may contain ':' or ',' (not allowed in a
			// phrase, but written by some mailers): skip it whole.
			if e := encodedWordEnd(v, i); e > 0 {
				i = e - 1
			}
		case c == ',':
			flush(i)
			start = i + 1
		case c == ':' && !inGroup:
			out = append(out, &mailboxv1.Address{Name: decodePhrase(v[start:i]), GroupStart: true})
			inGroup = true
			start = i + 1
		case c == ';':
			flush(i)
			start = i + 1
			if inGroup {
				out = append(out, &mailboxv1.Address{GroupEnd: true})
				inGroup = false
			}
		}
	}
	flush(len(v))
	if inGroup {
		out = append(out, &mailboxv1.Address{GroupEnd: true})
	}
	return out
}

// encodedWordEnd returns the offset just past the RFC 2047 encoded-word
// starting at v[i] ("=?charset?X?text?="), or 0 if there is none.
func encodedWordEnd(v string, i int) int {
	rest := v[i+2:]
	q1 := strings.IndexByte(rest, '?')
	if q1 < 0 {
		return 0
	}
	q2 := strings.IndexByte(rest[q1+1:], '?')
	if q2 < 0 {
		return 0
	}
	textStart := q1 + 1 + q2 + 1
	e := strings.Index(rest[textStart:], "?=")
	if e < 0 {
		return 0
	}
	return i + 2 + textStart + e + 2
}

// parseMailbox parses one mailbox ("Name <local@host>", "local@host (comment)").
func parseMailbox(s string) *mailboxv1.Address {
	if s == "" {
		return nil
	}
	var name, addr string
	if a, err := addrParser.Parse(s); err == nil {
		name, addr = a.Name, a.Address
		if strings.Contains(name, "=?") {
			name = decodeText(name)
		}
	} else {
		name, addr = lenientMailbox(s)
	}
	local, host := addr, ""
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local, host = addr[:at], addr[at+1:]
	}
	name, local, host = clean(name), clean(strings.TrimSpace(local)), clean(strings.TrimSpace(host))
	if local == "" && host == "" && name == "" {
		return nil
	}
	if local == "" {
		local = missingMailbox
	}
	if host == "" {
		host = missingDomain
	}
	return &mailboxv1.Address{Name: name, Mailbox: local, Host: host}
}

// lenientMailbox extracts a display name and address from a mailbox that is
// not valid RFC 5322: the address is the text in the last angle brackets (or
// the whole text), the name what precedes them.
func lenientMailbox(s string) (name, addr string) {
	if l := strings.LastIndexByte(s, '<'); l >= 0 {
		addr = s[l+1:]
		if r := strings.IndexByte(addr, '>'); r >= 0 {
			addr = addr[:r]
		}
		name = decodePhrase(s[:l])
	} else {
		addr = s
	}
	addr = flatten(addr, false)
	// Obsolete source route: "@relay1,@relay2:local@host".
	if strings.HasPrefix(addr, "@") {
		if i := strings.IndexByte(addr, ':'); i >= 0 {
			addr = addr[i+1:]
		}
	}
	return name, addr
}

// decodePhrase turns a display or group name as written into UTF-8: quotes
// and escapes removed, comments dropped, white space collapsed, encoded-words
// decoded.
func decodePhrase(s string) string {
	return strings.TrimSpace(decodeText(flatten(s, true)))
}

// flatten removes the RFC 5322 comments of s, the quotes and escapes of its
// quoted strings, and the white space outside them (collapsed to one space
// when keepSpace).
func flatten(s string, keepSpace bool) string {
	var b strings.Builder
	b.Grow(len(s))
	inQ, depth, space := false, 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case depth > 0:
			switch c {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			continue
		case inQ:
			if c == '\\' && i+1 < len(s) {
				i++
				c = s[i]
			} else if c == '"' {
				inQ = false
				continue
			}
		case c == '"':
			inQ = true
			continue
		case c == '(':
			depth = 1
			continue
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			space = true
			continue
		}
		if space && keepSpace && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteByte(c)
	}
	return b.String()
}
