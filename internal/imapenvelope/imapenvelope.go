// Package imapenvelope turns a stored envelope (mailboxv1.Envelope, the
// parsed header fields of RFC 3501 section 7.4.2) into IMAP's ENVELOPE:
// the go-imap value, and its wire form, rendered once when a message is
// stored so that a FETCH of many envelopes sends bytes instead of
// encoding every field again.
package imapenvelope

import (
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Encode returns e's ENVELOPE in wire form, for any client: subject and
// names as MIME encoded words, anything else that is not ASCII as a
// literal (imapserver.EncodeEnvelope).
func Encode(e *mailboxv1.Envelope) []byte {
	return imapserver.EncodeEnvelope(FromProto(e))
}

func addresses(in []*mailboxv1.Address) []imap.Address {
	if len(in) == 0 {
		return nil
	}
	out := make([]imap.Address, 0, len(in))
	for _, a := range in {
		switch {
		case a.GroupStart:
			out = append(out, imap.Address{Mailbox: a.Name})
		case a.GroupEnd:
			out = append(out, imap.Address{})
		default:
			out = append(out, imap.Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host})
		}
	}
	return out
}

// msgIDs returns the ids in a Message-ID or In-Reply-To header, without
// angle brackets.
func msgIDs(s string) []string {
	var out []string
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		out = append(out, s[i+1:i+j])
		s = s[i+j+1:]
	}
	if len(out) == 0 && strings.TrimSpace(s) != "" {
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

// parseDate reads a Date header; the common RFC 5322 form is tried first,
// without the error allocations of net/mail's layout search. Unreadable
// dates give the zero time (ENVELOPE date NIL).
func parseDate(s string) time.Time {
	s = strings.TrimSpace(s)
	for _, layout := range []string{"Mon, 2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 -0700"} {
		if len(s) >= len(layout)-2 && len(s) <= len(layout)+1 && (s[0] >= '0' && s[0] <= '9') == (layout[0] == '2') {
			if t, err := time.Parse(layout, s); err == nil {
				return t
			}
		}
	}
	if t, err := mail.ParseDate(s); err == nil {
		return t
	}
	return time.Time{}
}

// FromProto converts a stored envelope; nil gives an empty one (all NIL).
func FromProto(e *mailboxv1.Envelope) *imap.Envelope {
	if e == nil {
		return &imap.Envelope{}
	}
	out := &imap.Envelope{
		Subject: e.Subject, From: addresses(e.From), Sender: addresses(e.Sender),
		ReplyTo: addresses(e.ReplyTo), To: addresses(e.To), Cc: addresses(e.Cc),
		Bcc: addresses(e.Bcc), InReplyTo: msgIDs(e.InReplyTo),
	}
	out.Date = parseDate(e.Date)
	if ids := msgIDs(e.MessageId); len(ids) > 0 {
		out.MessageID = ids[0]
	}
	return out
}
