// Package dsn builds delivery status notifications: the bounce and delay
// messages the outbound queue sends back to a message's envelope sender
// (RFC 3464 message/delivery-status inside an RFC 6522 multipart/report,
// marked auto-replied per RFC 3834).
//
// Build takes the queue's account of what happened and writes a complete
// RFC 5322 message. Text that came from the network (remote replies,
// addresses) is sanitised here, so callers pass it through unchanged.
//
// Encoding choices, so the DSN needs neither 8BITMIME nor SMTPUTF8 unless
// the envelope sender's own address is non-ASCII:
//   - the human-readable part is text/plain; charset=utf-8, always
//     quoted-printable;
//   - the message/delivery-status part is 7-bit ASCII, as its registration
//     requires: a non-ASCII recipient address is written with the "utf-8"
//     address type of RFC 6533 §3 in its ASCII utf-8-addr-xtext form
//     ("Final-Recipient: utf-8; j\x{F6}rg@example.com"), and non-ASCII in
//     other fields with the same \x{HHHH} escapes; we do not produce
//     message/global-delivery-status;
//   - the text/rfc822-headers part is 7bit when the original header is
//     clean 7-bit text, quoted-printable otherwise.
package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
)

// Actions a Recipient reports (RFC 3464 §2.3.3). Only these two lead to a
// DSN from the queue: successful delivery is not reported.
const (
	ActionFailed  = "failed"
	ActionDelayed = "delayed"
)

// DefaultMaxHeader is the limit on the copied original header section when
// Build is given maxHeader <= 0.
const DefaultMaxHeader = 64 << 10

// Subjects of the DSN: failed when any recipient failed, delayed otherwise.
const (
	SubjectFailed  = "Undelivered Mail Returned to Sender"
	SubjectDelayed = "Delayed Mail (still being retried)"
)

// ErrNullSender is returned by Build for an empty Report.To: a message with
// a null reverse-path gets no DSN (RFC 5321 §4.5.5, RFC 3464 §2), which is
// also what keeps bounces from bouncing.
var ErrNullSender = errors.New("dsn: no DSN is sent to the null reverse-path")

// Recipient is one recipient's outcome reported in a DSN.
type Recipient struct {
	Address        string    // the original recipient address (Final-Recipient: rfc822;...)
	Action         string    // "failed" or "delayed"
	Status         string    // enhanced status code, e.g. "5.1.1", "4.4.7"
	RemoteMTA      string    // host name of the remote server that answered; "" if none answered
	Diagnostic     string    // the remote SMTP reply ("550 5.1.1 no such user") or our own text; may contain anything, sanitize it
	LastAttempt    time.Time // zero: omitted
	WillRetryUntil time.Time // only for "delayed"; zero: omitted

	// OriginalRecipient is the address the client gave in the ORCPT
	// parameter (RFC 3461 §4.2), already xtext-decoded; "" omits
	// Original-Recipient.
	OriginalRecipient string
}

// Report describes one DSN.
type Report struct {
	ReportingMTA string    // our host name (Reporting-MTA: dns; ...)
	From         string    // address the DSN comes from, e.g. "MAILER-DAEMON@mx.example.com"
	To           string    // the original envelope sender, who receives the DSN
	QueueID      string    // our queue id (X-Postfix-Queue-ID style: use "X-Mailcluster-Queue-ID" per-message field)
	ArrivalDate  time.Time // zero: Arrival-Date omitted
	Recipients   []Recipient
	Now          time.Time // Date header and Message-ID; zero: time.Now()
}

// Build writes the DSN message: RFC 5322 with CRLF line endings, no line
// longer than 998 octets. The caller sends it with a null reverse-path
// (MAIL FROM:<>) to r.To.
//
// original is the original message (header and body); Build copies only its
// header section into the text/rfc822-headers part (never more than
// maxHeader bytes; if truncated, cut at a line boundary). Build reads
// original no further than the end of its header section or the limit,
// plus at most 4 KiB of read-ahead: a large body is not read. A
// nil original omits the part (it is optional, RFC 6522 §3). maxHeader <= 0
// means DefaultMaxHeader. Line endings of the copy are normalised to CRLF
// and a bare CR becomes a space; the limit counts the normalised bytes.
//
// Build validates what the queue controls and sanitises what came from
// outside: it returns an error when ReportingMTA is not a host name (a
// trailing dot is dropped), From or
// To is not an address (ErrNullSender for an empty To), there are no
// recipients, an Action is neither "failed" nor "delayed", or a Status is
// not an enhanced status code of class 4 or 5 (RFC 3463 §2; class 4 for
// "delayed"). Addresses, RemoteMTA, QueueID and Diagnostic may hold
// anything: line breaks and other control and format characters become
// spaces, runs of white space collapse, and over-long values are cut and
// marked with "...". Diagnostic-Code gets the "smtp" diagnostic type when
// Diagnostic starts like an SMTP reply ("550 ..."), "X-Mailcluster"
// otherwise (RFC 3464 §2.3.6). WillRetryUntil is ignored for "failed".
func Build(r Report, original io.Reader, maxHeader int) ([]byte, error) {
	r.ReportingMTA = strings.TrimSuffix(r.ReportingMTA, ".")
	if err := r.validate(); err != nil {
		return nil, err
	}
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}

	var origHeader []byte
	if original != nil {
		if maxHeader <= 0 {
			maxHeader = DefaultMaxHeader
		}
		var err error
		if origHeader, err = readHeaderSection(original, maxHeader); err != nil {
			return nil, fmt.Errorf("dsn: reading the original message: %w", err)
		}
	}

	// The boundary holds "=_", which quoted-printable can never produce, and
	// 24 random octets, which nobody can guess into the delivery-status or
	// 7bit header part: no input can end a part early. The Message-ID's
	// uniqueness comes from 8 more.
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	boundary := "=_" + hex.EncodeToString(nonce[:24])
	msgID := strconv.FormatInt(now.UnixNano(), 36) + "." + hex.EncodeToString(nonce[24:]) + "@" + r.ReportingMTA

	subject := SubjectDelayed
	for _, rc := range r.Recipients {
		if rc.Action == ActionFailed {
			subject = SubjectFailed
		}
	}

	// go-message's Header writes the most recently set field first, so the
	// fields are set bottom to top.
	var h gomail.Header
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status", "boundary": boundary})
	h.Set("Auto-Submitted", "auto-replied")
	h.Set("MIME-Version", "1.0")
	h.SetMessageID(msgID)
	h.SetDate(now)
	h.SetSubject(subject)
	h.SetAddressList("To", []*mail.Address{{Address: r.To}})
	h.SetAddressList("From", []*mail.Address{{Name: "Mail Delivery System", Address: r.From}})

	var out bytes.Buffer
	w, err := message.CreateWriter(&out, h.Header)
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}

	var textHeader message.Header
	textHeader.Set("Content-Transfer-Encoding", "quoted-printable")
	textHeader.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	if err := writePart(w, textHeader, humanText(r)); err != nil {
		return nil, err
	}

	// message/delivery-status is 7-bit by construction (deliveryStatus),
	// so no Content-Transfer-Encoding (7bit is the default).
	var statusHeader message.Header
	statusHeader.SetContentType("message/delivery-status", nil)
	if err := writePart(w, statusHeader, deliveryStatus(r)); err != nil {
		return nil, err
	}

	if original != nil {
		var hh message.Header
		hh.Set("Content-Transfer-Encoding", headerEncoding(origHeader))
		hh.SetContentType("text/rfc822-headers", nil)
		if err := writePart(w, hh, origHeader); err != nil {
			return nil, err
		}
	}

	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	return out.Bytes(), nil
}

func writePart(w *message.Writer, h message.Header, body []byte) error {
	pw, err := w.CreatePart(h)
	if err != nil {
		return fmt.Errorf("dsn: %w", err)
	}
	if _, err := pw.Write(body); err != nil {
		return fmt.Errorf("dsn: %w", err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("dsn: %w", err)
	}
	return nil
}

// maxAddressLen bounds From and To. RFC 5321 §4.5.3.1.3 limits a path to
// 256 octets; we accept twice that and refuse the rest, which keeps the
// header lines short.
const maxAddressLen = 512

func (r *Report) validate() error {
	if err := checkHostname(r.ReportingMTA); err != nil {
		return fmt.Errorf("dsn: ReportingMTA %q: %w", r.ReportingMTA, err)
	}
	if r.To == "" {
		return ErrNullSender
	}
	if err := checkAddress(r.To); err != nil {
		return fmt.Errorf("dsn: To: %w", err)
	}
	if err := checkAddress(r.From); err != nil {
		return fmt.Errorf("dsn: From: %w", err)
	}
	if len(r.Recipients) == 0 {
		return errors.New("dsn: no recipients to report")
	}
	for i, rc := range r.Recipients {
		if rc.Action != ActionFailed && rc.Action != ActionDelayed {
			return fmt.Errorf("dsn: recipient %d: Action %q, want %q or %q", i, rc.Action, ActionFailed, ActionDelayed)
		}
		if !validStatus(rc.Status) {
			return fmt.Errorf("dsn: recipient %d: Status %q is not an enhanced status code (RFC 3463)", i, rc.Status)
		}
		if rc.Status[0] != '4' && rc.Status[0] != '5' || rc.Action == ActionDelayed && rc.Status[0] != '4' {
			return fmt.Errorf("dsn: recipient %d: Status %s does not go with Action %q", i, rc.Status, rc.Action)
		}
		if cleanText(rc.Address, maxAddress) == "" {
			return fmt.Errorf("dsn: recipient %d: empty Address", i)
		}
	}
	return nil
}

// checkAddress accepts what can be written in an address header field:
// "local@domain" that net/mail parses, no control characters, at most
// maxAddressLen octets. Non-ASCII is allowed (RFC 6532).
func checkAddress(a string) error {
	if len(a) > maxAddressLen {
		return fmt.Errorf("address longer than %d octets", maxAddressLen)
	}
	for _, c := range a {
		if c < ' ' || c == 0x7f {
			return fmt.Errorf("address %q has a control character", a)
		}
	}
	p, err := mail.ParseAddress("<" + a + ">")
	if err != nil {
		return fmt.Errorf("address %q: %w", a, err)
	}
	if p.Address != a {
		// A quoted local part parses to its unquoted form, which
		// SetAddressList would quote again: refuse rather than change
		// the address.
		return fmt.Errorf("address %q is not in its plain form %q", a, p.Address)
	}
	return nil
}

// checkHostname accepts an LDH host name (RFC 1123 §2.1), optionally with
// one trailing dot.
func checkHostname(s string) error {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return errors.New("not a host name")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("not a host name")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return errors.New("not a host name")
			}
		}
	}
	return nil
}

// validStatus checks RFC 3463 §2: class "." subject "." detail, class one
// of 2, 4, 5, subject and detail 1 to 3 digits.
func validStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.ContainsAny(parts[0], "245") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}
