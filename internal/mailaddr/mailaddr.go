// Package mailaddr holds the one rule for which addresses the outbound
// queue takes, shared by the SMTP frontend (which answers at RCPT) and the
// backend's store (which guards the Deliver RPC), so that the two cannot
// drift apart and a message accepted at RCPT be refused after DATA.
package mailaddr

import "strings"

// MaxPath is the longest address accepted, in bytes (RFC 5321 4.5.3.1.3).
const MaxPath = 256

// Queueable reports whether addr can be sent on by SMTP: at most MaxPath
// bytes, no space or control character (go-smtp unquotes "a b"@x into a
// path no server would take), and a domain after the last '@'. UTF-8 is
// allowed (RFC 6531).
func Queueable(addr string) bool {
	if len(addr) > MaxPath {
		return false
	}
	for i := 0; i < len(addr); i++ {
		if addr[i] <= ' ' || addr[i] == 0x7f {
			return false
		}
	}
	at := strings.LastIndexByte(addr, '@')
	return at > 0 && at < len(addr)-1
}
