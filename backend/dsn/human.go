package dsn

import "strings"

// humanText writes the text/plain part for the sender: what happened to
// each recipient, in words, and the remote server's answer. Paragraphs are
// wrapped at textWidth so the quoted-printable encoding rarely needs a soft
// line break.
func humanText(r Report) []byte {
	var b strings.Builder
	para(&b, "", "This is the mail system at host "+r.ReportingMTA+".")
	b.WriteString("\r\n")

	var failed, delayed []Recipient
	for _, rc := range r.Recipients {
		if rc.Action == ActionFailed {
			failed = append(failed, rc)
		} else {
			delayed = append(delayed, rc)
		}
	}
	if len(failed) > 0 {
		para(&b, "", "Your message could not be delivered to the following recipients. "+
			"The mail system has given up: to reach them, check the address and send the message again.")
		b.WriteString("\r\n")
		for _, rc := range failed {
			writeHumanRecipient(&b, rc)
		}
	}
	if len(delayed) > 0 {
		para(&b, "", "Your message has not yet been delivered to the following recipients. "+
			"The mail system is still trying; you do not need to send it again. "+
			"You will be told if it finally fails.")
		b.WriteString("\r\n")
		for _, rc := range delayed {
			writeHumanRecipient(&b, rc)
		}
	}
	para(&b, "", "The header of your message is attached. "+
		"If you need help, forward this message to your mail administrator.")
	return []byte(b.String())
}

func writeHumanRecipient(b *strings.Builder, rc Recipient) {
	para(b, "  ", cleanText(rc.Address, maxAddress))
	para(b, "    ", "Reason: "+statusText(rc.Status)+" ("+rc.Status+").")
	if d := cleanText(rc.Diagnostic, maxDiagnostic); d != "" {
		if host := cleanText(rc.RemoteMTA, maxHost); host != "" {
			para(b, "    ", "The mail server "+host+" answered: "+d)
		} else {
			para(b, "    ", "Details: "+d)
		}
	}
	if rc.Action == ActionDelayed && !rc.WillRetryUntil.IsZero() {
		para(b, "    ", "Still trying until: "+rc.WillRetryUntil.Format(dateLayout))
	}
	b.WriteString("\r\n")
}

// textWidth is where para wraps, leaving room for quoted-printable's 76.
const textWidth = 72

// para writes text (one line, single spaces: cleanText output or our own
// words) as lines of at most textWidth octets starting with indent, broken
// at spaces; a longer word gets a line of its own.
func para(b *strings.Builder, indent, text string) {
	line := indent
	for _, word := range strings.Split(text, " ") {
		if len(line) > len(indent) && len(line)+1+len(word) > textWidth {
			b.WriteString(line + "\r\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\r\n")
}

// statusText explains an enhanced status code (RFC 3463, RFC 7505 for
// X.1.10) to someone who is not a mail administrator.
func statusText(status string) string {
	_, detail, _ := strings.Cut(status, ".")
	switch detail {
	case "1.1":
		return "the recipient's address does not exist"
	case "1.2":
		return "the recipient's domain does not exist or cannot receive mail"
	case "1.3":
		return "the recipient's address is not valid"
	case "1.10":
		return "the recipient's domain does not accept mail"
	case "2.1":
		return "the recipient's mailbox is disabled"
	case "2.2":
		return "the recipient's mailbox is full"
	case "2.3", "3.4":
		return "the message is too large for the recipient's mail system"
	case "4.1", "4.2":
		return "the recipient's mail server could not be reached or did not answer"
	case "4.4":
		return "no mail server could be found for the recipient's domain"
	case "4.7":
		return "the message could not be delivered in time, so the mail system gave up"
	}
	if strings.HasPrefix(detail, "7.") {
		return "the recipient's mail system refused the message for security or policy reasons"
	}
	if strings.HasPrefix(status, "4.") {
		return "a temporary problem on the way to the recipient"
	}
	return "the recipient's mail system refused the message"
}
