package outbound

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// outcome is what happened to a recipient, before it becomes its Result.
type outcome struct {
	code      int
	enhanced  string
	message   string
	remote    string
	permanent bool
	delivered bool
}

func (o outcome) result(rcpt string) Result {
	return Result{
		Recipient: rcpt,
		Code:      o.code,
		Enhanced:  o.enhanced,
		Message:   sanitize(o.message),
		RemoteMTA: o.remote,
		Permanent: o.permanent,
		Delivered: o.delivered,
	}
}

// replyOutcome maps a server's negative (or unexpected) reply. A reply
// outside 4xx/5xx where a different one was expected is a temporary
// protocol error.
func replyOutcome(e *smtp.SMTPError, remote string) outcome {
	o := outcome{code: e.Code, message: e.Message, remote: remote}
	class := e.Code / 100
	switch class {
	case 4:
	case 5:
		o.permanent = true
	default:
		o.message = fmt.Sprintf("unexpected reply %d %s", e.Code, e.Message)
		o.enhanced = "4.5.0"
		return o
	}
	if e.EnhancedCode[0] == class {
		o.enhanced = enhancedOf(class, e.EnhancedCode)
		return o
	}
	// go-smtp parses an enhanced code on the first line only; some
	// servers (go-smtp's among them) put it on the last line alone.
	lines := strings.Split(e.Message, "\n")
	for i, l := range lines {
		if first, rest, ok := strings.Cut(l, " "); ok && isEnhanced(first, byte('0'+class)) {
			if o.enhanced == "" {
				o.enhanced = first
			}
			lines[i] = rest
		}
	}
	o.message = strings.Join(lines, "\n")
	if o.enhanced == "" {
		o.enhanced = enhancedOf(class, e.EnhancedCode)
	}
	return o
}

// enhancedOf formats ec, or synthesises "class.0.0" when the server gave no
// enhanced code or one whose class contradicts the reply (RFC 3463 section
// 2: the classes must agree).
func enhancedOf(class int, ec smtp.EnhancedCode) string {
	if ec[0] != class || ec == smtp.NoEnhancedCode {
		return fmt.Sprintf("%d.0.0", class)
	}
	return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
}

// successOutcome is the outcome of a 250 reply to the final dot whose text
// (as go-smtp returns it, without the code) may start with an enhanced code.
func successOutcome(text, remote string) outcome {
	o := outcome{code: 250, enhanced: "2.0.0", message: text, remote: remote, delivered: true}
	if first, rest, ok := strings.Cut(text, " "); ok && isEnhanced(first, '2') {
		o.enhanced, o.message = first, rest
	}
	return o
}

// isEnhanced reports whether s is an RFC 3463 status code of class class.
func isEnhanced(s string, class byte) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != string(class) {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 || len(p) > 3 {
			return false
		}
	}
	return true
}

// maxMessage caps Result.Message.
const maxMessage = 500

// sanitize makes s one line of printable ASCII of at most maxMessage bytes,
// for logs and DSNs: line breaks and tabs become spaces, runs of spaces
// collapse, other control characters and non-ASCII bytes become '?'.
func sanitize(s string) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s) && b.Len() < maxMessage; {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == '\r' || r == '\n' || r == '\t' || r == ' ':
			space = b.Len() > 0
			continue
		case r < ' ' || r >= 0x7f:
			r = '?'
		}
		if space {
			if b.Len()+1 >= maxMessage {
				break
			}
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}
