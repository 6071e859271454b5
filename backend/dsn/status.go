package dsn

import (
	"bytes"
	"strings"
)

// dateLayout is the RFC 5322 §3.3 date-time used for the Date header (by
// go-message) and for the date fields of RFC 3464 §2.2.5, §2.3.7, §2.3.8.
const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

// Limits on sanitised values, in octets after escaping. They keep every
// line of the delivery-status part under 998 octets even when a value is a
// single word that cannot be folded (the longest field name prefix,
// "Diagnostic-Code: X-Mailcluster; ", is 32 octets).
const (
	maxDiagnostic = 900
	maxAddress    = 600
	maxHost       = 255
	maxQueueID    = 200
)

// deliveryStatus writes the message/delivery-status body (RFC 3464 §2.1):
// the per-message fields, then one block of per-recipient fields for each
// recipient, each block preceded by an empty line.
//
// It is written by hand: go-message has no type for this content, and its
// textproto.Header, the only candidate, would rename the fields to
// Go-canonical form ("Reporting-Mta", "Remote-Mta", "X-Mailcluster-Queue-Id")
// which naive bounce processors that match RFC 3464 spelling miss, and
// would fold long words by inserting spaces at 998 octets where we cap
// values instead. Every value passes through cleanText and asciiEscape, so
// the result is 7-bit, has no CR or LF except line ends, and every line
// starts with a field name or a folding space, never "--".
func deliveryStatus(r Report) []byte {
	var b bytes.Buffer
	writeField(&b, "Reporting-MTA", "dns; "+r.ReportingMTA)
	if q := asciiEscape(cleanText(r.QueueID, maxQueueID), maxQueueID); q != "" {
		writeField(&b, "X-Mailcluster-Queue-ID", q)
	}
	if !r.ArrivalDate.IsZero() {
		writeField(&b, "Arrival-Date", r.ArrivalDate.Format(dateLayout))
	}
	for _, rc := range r.Recipients {
		b.WriteString("\r\n")
		writeField(&b, "Final-Recipient", addressType(rc.Address))
		if rc.OriginalRecipient != "" {
			if a := addressType(rc.OriginalRecipient); a != "" {
				writeField(&b, "Original-Recipient", a)
			}
		}
		writeField(&b, "Action", rc.Action)
		writeField(&b, "Status", rc.Status)
		if host := asciiEscape(cleanText(rc.RemoteMTA, maxHost), maxHost); host != "" {
			writeField(&b, "Remote-MTA", "dns; "+host)
		}
		if d := cleanText(rc.Diagnostic, maxDiagnostic); d != "" {
			writeField(&b, "Diagnostic-Code", diagnosticType(d)+"; "+asciiEscape(d, maxDiagnostic))
		}
		if !rc.LastAttempt.IsZero() {
			writeField(&b, "Last-Attempt-Date", rc.LastAttempt.Format(dateLayout))
		}
		if rc.Action == ActionDelayed && !rc.WillRetryUntil.IsZero() {
			writeField(&b, "Will-Retry-Until", rc.WillRetryUntil.Format(dateLayout))
		}
	}
	return b.Bytes()
}

// addressType formats an address with its RFC 3464 §2.3.2 address type:
// "rfc822; addr" when it is ASCII, else the RFC 6533 §3 "utf-8" type in
// utf-8-addr-xtext form, which keeps the part 7-bit. "" if nothing is left
// after cleaning.
func addressType(addr string) string {
	a := cleanText(addr, maxAddress)
	if a == "" {
		return ""
	}
	if isASCII(a) {
		return "rfc822; " + a
	}
	return "utf-8; " + utf8AddrXtext(a, maxAddress)
}

// diagnosticType is "smtp" for text that starts like an SMTP reply (a
// three-digit code then space, hyphen or end, RFC 5321 §4.2), the
// private "X-Mailcluster" type otherwise (RFC 3464 §2.3.6).
func diagnosticType(d string) string {
	if len(d) >= 3 && d[0] >= '2' && d[0] <= '5' && isDigit(d[1]) && isDigit(d[2]) &&
		(len(d) == 3 || d[3] == ' ' || d[3] == '-') {
		return "smtp"
	}
	return "X-Mailcluster"
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// foldWidth is the line length writeField folds at when a space allows
// (RFC 5322 §2.1.1 SHOULD limit of 78).
const foldWidth = 78

// writeField writes "name: value" CRLF, folding at spaces (RFC 5322
// §3.2.2: a fold replaces a space by CRLF space, so unfolding restores the
// value). value is a single line whose spaces are single (cleanText); words
// are never split, so a line is at most the prefix plus one capped value.
func writeField(b *bytes.Buffer, name, value string) {
	line := name + ":"
	for _, word := range strings.Split(value, " ") {
		if len(line)+1+len(word) > foldWidth && strings.TrimSpace(line) != name+":" {
			b.WriteString(line)
			b.WriteString("\r\n")
			line = ""
		}
		line += " " + word
	}
	b.WriteString(line)
	b.WriteString("\r\n")
}
