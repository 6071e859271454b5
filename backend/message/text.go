package message

import (
	"bytes"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// decodeTransfer decodes a Content-Transfer-Encoding (RFC 2045 §6) leniently:
// invalid characters are skipped instead of failing. Encodings other than
// base64 and quoted-printable are returned as they are.
func decodeTransfer(enc string, raw []byte) []byte {
	switch enc {
	case "base64":
		return decodeBase64(raw)
	case "quoted-printable":
		return decodeQP(raw)
	}
	return raw
}

var b64 = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" {
		t[c] = int8(i)
	}
	return t
}()

// decodeBase64 decodes base64 ignoring characters outside the alphabet; '='
// ends a quantum, so concatenated encodings decode too.
func decodeBase64(raw []byte) []byte {
	out := make([]byte, 0, len(raw)*3/4+3)
	var acc uint32
	n := 0
	flush := func() {
		switch n {
		case 2:
			out = append(out, byte(acc>>4))
		case 3:
			out = append(out, byte(acc>>10), byte(acc>>2))
		}
		acc, n = 0, 0
	}
	for _, c := range raw {
		if c == '=' {
			flush()
			continue
		}
		v := b64[c]
		if v < 0 {
			continue
		}
		acc = acc<<6 | uint32(v)
		n++
		if n == 4 {
			out = append(out, byte(acc>>16), byte(acc>>8), byte(acc))
			acc, n = 0, 0
		}
	}
	flush()
	return out
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	}
	return -1
}

// decodeQP decodes quoted-printable (RFC 2045 §6.7): "=XX" is a byte, "=" at
// the end of a line (after trailing white space) is a soft line break, and a
// "=" not followed by either is kept literally. Trailing white space of lines
// is removed as the RFC requires of decoders.
func decodeQP(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	kept := 0 // out[kept:] is literal white space that ends the line so far
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case ' ', '\t', '\r':
			out = append(out, c)
			continue
		case '\n':
			out = append(out[:kept], '\r', '\n')
		case '=':
			if i+2 < len(raw) {
				if hi, lo := unhex(raw[i+1]), unhex(raw[i+2]); hi >= 0 && lo >= 0 {
					out = append(out, byte(hi<<4|lo))
					i += 2
					break
				}
			}
			k := i + 1
			for k < len(raw) && (raw[k] == ' ' || raw[k] == '\t' || raw[k] == '\r') {
				k++
			}
			if k == len(raw) || raw[k] == '\n' {
				out = out[:kept] // soft line break
				i = k
			} else {
				out = append(out, c)
			}
		default:
			out = append(out, c)
		}
		kept = len(out)
	}
	return out[:kept]
}

// toUTF8 converts decoded text in charset cs to at most max bytes of valid
// UTF-8 without NUL characters. Unknown charsets are treated as UTF-8.
func toUTF8(cs string, b []byte, max int) string {
	var sb strings.Builder
	appendUTF8(&sb, cs, b, max)
	return sb.String()
}

// appendUTF8 is toUTF8 writing to sb: it converts b from charset cs and
// writes at most max bytes of it, cut at a character boundary, made valid
// UTF-8 without NUL characters.
func appendUTF8(sb *strings.Builder, cs string, b []byte, max int) {
	cs = strings.ToLower(strings.TrimSpace(cs))
	switch cs {
	case "", "us-ascii", "utf-8", "utf8", "ascii":
	default:
		if r, err := charset.Reader(cs, bytes.NewReader(b)); err == nil {
			if d, err := io.ReadAll(io.LimitReader(r, int64(max)+utf8.UTFMax)); err == nil || len(d) > 0 {
				b = d
			}
		}
	}
	b = cutUTF8(b, max)
	if utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 {
		sb.Write(b)
		return
	}
	// Invalid bytes become U+FFFD, which may make the text longer.
	sb.WriteString(truncate(clean(string(b)), max))
}

// cutUTF8 cuts b to at most max bytes without splitting a UTF-8 sequence
// (an invalid sequence at the cut is dropped).
func cutUTF8(b []byte, max int) []byte {
	if len(b) <= max {
		return b
	}
	b = b[:max]
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size > 1 {
			break
		}
		b = b[:len(b)-1]
	}
	return b
}
