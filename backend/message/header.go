package message

import (
	"io"
	"mime"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// field is one header field: its name as written and its value unfolded
// (line endings of continuation lines removed, RFC 5322 §2.2.3) and trimmed.
type field struct {
	name, value string
}

// header is a parsed header block. Lookups return the first field of a name,
// as IMAP servers conventionally do for duplicated fields.
type header []field

func (h header) get(name string) string {
	for i := range h {
		if strings.EqualFold(h[i].name, name) {
			return h[i].value
		}
	}
	return ""
}

// parseHeader splits a raw header block into fields. It never fails: lines
// that are neither a field nor a continuation are skipped, a continuation
// line before any field is ignored, and the blank line ending the block (if
// present) is ignored.
//
// The fields are split here rather than with go-message's textproto reader
// because that reader rejects malformed lines (the whole header would be
// lost) and does not expose where the header ends in the input.
func parseHeader(raw string) header {
	h := make(header, 0, strings.Count(raw, "\n")+1)
	cur := -1            // index in h of the field being continued
	var folded bool      // cur's value spans several lines
	var vstart, vend int // cur's value is raw[vstart:vend]
	finish := func() {
		if cur < 0 {
			return
		}
		v := raw[vstart:vend]
		if folded {
			v = unfold(v)
		}
		h[cur].value = strings.TrimSpace(v)
		cur = -1
	}
	for pos := 0; pos < len(raw); {
		next := len(raw)
		if i := strings.IndexByte(raw[pos:], '\n'); i >= 0 {
			next = pos + i + 1
		}
		content := raw[pos:next]
		content = strings.TrimSuffix(content, "\n")
		content = strings.TrimSuffix(content, "\r")
		switch {
		case content == "":
			finish()
		case content[0] == ' ' || content[0] == '\t':
			if cur >= 0 {
				folded = true
				vend = pos + len(content)
			}
		default:
			finish()
			if n := fieldNameLen(content); n > 0 {
				h = append(h, field{name: strings.TrimRight(content[:n], " \t")})
				cur = len(h) - 1
				folded = false
				vstart = pos + n + 1
				vend = pos + len(content)
			}
		}
		pos = next
	}
	finish()
	return h
}

// fieldNameLen returns the index of the colon ending the field name at the
// start of line, or 0 when line does not start a header field. A name is one or
// more printable US-ASCII characters other than colon (RFC 5322 §3.6.8),
// optionally followed by white space before the colon (obsolete syntax,
// RFC 5322 §4.5).
func fieldNameLen[T string | []byte](line T) int {
	i := 0
	for i < len(line) && line[i] > ' ' && line[i] < 0x7f && line[i] != ':' {
		i++
	}
	if i == 0 {
		return 0
	}
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	if i < len(line) && line[i] == ':' {
		return i
	}
	return 0
}

// unfold removes the line endings inside a folded field value, keeping the
// white space that starts each continuation line.
func unfold(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		if c := v[i]; c != '\r' && c != '\n' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// wordDecoder decodes RFC 2047 encoded-words. Unknown charsets do not fail the
// decoding: their bytes are kept and later made valid UTF-8 by clean.
var wordDecoder = &mime.WordDecoder{CharsetReader: lenientCharsetReader}

func lenientCharsetReader(cs string, in io.Reader) (io.Reader, error) {
	r, err := charset.Reader(cs, in)
	if err != nil {
		return in, nil
	}
	return r, nil
}

// decodeText decodes RFC 2047 encoded-words in an unstructured header value
// and returns valid UTF-8. Malformed encoded-words are kept as written.
func decodeText(s string) string {
	if strings.Contains(s, "=?") {
		if d, err := wordDecoder.DecodeHeader(s); err == nil {
			s = d
		}
	}
	return clean(s)
}

// clean returns s as valid UTF-8 without NUL characters, so that it can be
// stored in a protobuf string and a PostgreSQL text column. Invalid bytes
// (for example undeclared 8-bit text in a header) become U+FFFD.
func clean(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", " ")
}

// parseParams parses a Content-Type or Content-Disposition value into its
// lower-case value ("text/plain", "attachment") and parameters, and returns
// the boundary parameter as written (for matching; params has it made valid
// UTF-8). Parameter names are lower case. RFC 2231 continuations and charsets
// are decoded (any charset go-message knows, where mime.ParseMediaType only
// knows UTF-8 and US-ASCII and drops the others), and RFC 2047 encoded-words
// in values (a common non-standard practice, decoded by go-message too) are
// decoded. Malformed parameters are skipped, keeping the rest. ok is false
// when the value itself is not a valid token or type/subtype.
func parseParams(v string) (value string, params map[string]string, boundary string, ok bool) {
	mt, p, err := "", map[string]string(nil), error(nil)
	if strings.IndexByte(v, '*') < 0 {
		mt, p, err = mime.ParseMediaType(v)
	}
	if err != nil || mt == "" {
		mt, p = lenientParams(v)
		if mt == "" {
			return "", nil, "", false
		}
	}
	boundary = p["boundary"]
	for k, pv := range p {
		if k == "boundary" {
			// Boundaries may contain "=?": not an encoded-word.
			p[k] = clean(pv)
			continue
		}
		p[k] = decodeText(pv)
	}
	if len(p) == 0 {
		p = nil
	}
	return mt, p, boundary, true
}

// paramPiece is one section of an RFC 2231 parameter ("name*1*=...").
type paramPiece struct {
	idx int  // section number, -1 for "name*="
	ext bool // percent-encoded, the first section with charset'language'
	val string
}

// lenientParams parses what mime.ParseMediaType rejects (duplicate, stray or
// unterminated parameters) or does not fully decode (RFC 2231 values in
// charsets other than UTF-8). It returns "" as the value when that is not
// valid. An extended parameter (name*) wins over a plain one of the same name
// (RFC 2231 §4 lets a sender give both).
func lenientParams(v string) (string, map[string]string) {
	items := splitParams(v)
	mt := strings.ToLower(strings.TrimSpace(items[0]))
	if !validMediaValue(mt) {
		return "", nil
	}
	params := make(map[string]string)
	var pieces map[string][]paramPiece
	for _, it := range items[1:] {
		k, pv, found := strings.Cut(it, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !found {
			continue
		}
		pv = strings.TrimSpace(pv)
		if len(pv) >= 2 && pv[0] == '"' {
			pv = unquote(pv)
		}
		pc := paramPiece{idx: -1}
		if strings.HasSuffix(k, "*") {
			pc.ext, k = true, k[:len(k)-1]
		}
		if i := strings.IndexByte(k, '*'); i >= 0 {
			n, err := strconv.Atoi(k[i+1:])
			if err != nil || n < 0 {
				continue
			}
			pc.idx, k = n, k[:i]
		}
		if !isToken(k) {
			continue
		}
		if pc.idx < 0 && !pc.ext {
			if _, dup := params[k]; !dup {
				params[k] = pv
			}
			continue
		}
		pc.val = pv
		if pieces == nil {
			pieces = make(map[string][]paramPiece)
		}
		pieces[k] = append(pieces[k], pc)
	}
	for k, ps := range pieces {
		params[k] = join2231(ps)
	}
	return mt, params
}

// join2231 assembles and decodes the sections of an RFC 2231 parameter.
func join2231(ps []paramPiece) string {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].idx < ps[j].idx })
	var raw []byte
	cs := ""
	for i, pc := range ps {
		if !pc.ext {
			raw = append(raw, pc.val...)
			continue
		}
		s := pc.val
		if i == 0 {
			if a := strings.IndexByte(s, '\''); a >= 0 {
				if b := strings.IndexByte(s[a+1:], '\''); b >= 0 {
					cs, s = s[:a], s[a+1+b+1:]
				}
			}
		}
		raw = appendUnescaped(raw, s)
	}
	return toUTF8(cs, raw, 4*len(raw)+16)
}

// appendUnescaped appends s with %XX escapes decoded; a malformed escape is
// kept as written.
func appendUnescaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if hi, lo := unhex(s[i+1]), unhex(s[i+2]); hi >= 0 && lo >= 0 {
				dst = append(dst, byte(hi<<4|lo))
				i += 2
				continue
			}
		}
		dst = append(dst, s[i])
	}
	return dst
}

// splitParams splits v at semicolons outside quoted strings.
func splitParams(v string) []string {
	var out []string
	inQ, start := false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case inQ && c == '\\':
			i++
		case c == '"':
			inQ = !inQ
		case !inQ && c == ';':
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// unquote removes the quotes and backslash escapes of a quoted string; text
// after the closing quote is dropped.
func unquote(s string) string {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String()
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// validMediaValue reports whether s is a token or token/token.
func validMediaValue(s string) bool {
	t, sub, slash := strings.Cut(s, "/")
	return isToken(t) && (!slash || isToken(sub))
}

// isToken reports whether s is a non-empty RFC 2045 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}
