package dkim

import (
	"bufio"
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// signedFields are the header fields signed when present, in h= order: RFC
// 6376 §5.4.1's list plus the originator and MIME fields whose change would
// alter what the reader sees. Any field whose name starts with "List-" is
// signed too (RFC 2369, RFC 2919, and RFC 8058 §4, which requires
// List-Unsubscribe-Post to be signed).
var signedFields = []string{
	"From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date",
	"Message-ID", "In-Reply-To", "References",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Message-ID",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
	"Content-ID", "Content-Description",
	"Autocrypt", "Autocrypt-Setup-Message",
}

// overSigned are the fields RFC 5322 §3.6 allows at most once. Each present
// one is listed in h= once more than it occurs (RFC 6376 §8.15), so a copy
// added after signing, above or below the original, breaks the signature
// instead of being shown to the reader unsigned.
var overSigned = map[string]bool{
	"from": true, "sender": true, "reply-to": true, "to": true, "cc": true,
	"subject": true, "date": true, "message-id": true,
	"in-reply-to": true, "references": true,
}

// ErrNoFrom is returned by Sign when the message header has no From field,
// or more than one: RFC 6376 §5.4 requires From to be signed, and RFC 5322
// §3.6 allows exactly one.
var ErrNoFrom = errors.New("dkim: message must have exactly one From header field")

// Sign reads a whole message (header section, empty line, body; CRLF line
// endings) and returns the DKIM-Signature header field to prepend to it,
// including the trailing CRLF, e.g.
//
//	"DKIM-Signature: a=rsa-sha256; bh=...;\r\n c=relaxed/relaxed; d=example.com;\r\n h=from:from:to:to:subject:...;\r\n s=sel; t=...; v=1;\r\n b=...\r\n"
//
// The signature uses relaxed/relaxed canonicalization (RFC 6376 §3.4) and
// covers the fields listed in signedFields that are present, with From and
// the other single-instance fields over-signed. The message must be
// delivered byte for byte as read, with the returned field prepended and
// nothing else changed. The body is streamed: only the header section is
// held in memory.
//
// The header section must end with an empty line (a message with no body
// still needs it: the verifier cannot find the end of the header otherwise)
// and contain exactly one From field (ErrNoFrom).
func (k *Key) Sign(message io.Reader) (string, error) {
	br := bufio.NewReader(message)
	header, names, err := readHeader(br)
	if err != nil {
		return "", err
	}
	keys, err := headerKeys(names)
	if err != nil {
		return "", err
	}

	s, err := dkim.NewSigner(&dkim.SignOptions{
		Domain:                 k.Domain,
		Selector:               k.Selector,
		Signer:                 k.signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             keys,
	})
	if err != nil {
		return "", fmt.Errorf("dkim: %w", err)
	}
	if _, err := s.Write(header); err != nil {
		s.Close()
		return "", fmt.Errorf("dkim: signing: %w", err)
	}
	if _, err := io.Copy(s, br); err != nil {
		s.Close()
		return "", fmt.Errorf("dkim: reading message: %w", err)
	}
	if err := s.Close(); err != nil {
		return "", fmt.Errorf("dkim: signing: %w", err)
	}
	sig := s.Signature()
	// go-msgauth puts each tag on one line; h= grows with the number of
	// signed fields, which only a malformed message (hundreds of To fields)
	// can push past the RFC 5322 §2.1.1 line limit.
	for _, line := range strings.Split(sig, "\r\n") {
		if len(line) > 998 {
			return "", errors.New("dkim: too many signed header fields: the signature would have a line over 998 octets")
		}
	}
	return sig, nil
}

// readHeader reads the header section up to and including the empty line
// that ends it, returning its raw bytes and the name of each field in order.
// A line that starts with a space or tab continues the previous field, as
// go-msgauth's own reader treats it.
func readHeader(br *bufio.Reader) (raw []byte, names []string, err error) {
	var buf bytes.Buffer
	for {
		line, err := br.ReadBytes('\n')
		buf.Write(line)
		if err == io.EOF {
			return nil, nil, errors.New("dkim: message has no empty line after the header section")
		}
		if err != nil {
			return nil, nil, fmt.Errorf("dkim: reading message: %w", err)
		}
		content := bytes.TrimRight(line, "\r\n")
		if len(content) == 0 {
			return buf.Bytes(), names, nil
		}
		if content[0] == ' ' || content[0] == '\t' {
			continue
		}
		name, _, _ := bytes.Cut(content, []byte(":"))
		names = append(names, string(bytes.TrimSpace(name)))
	}
}

// headerKeys computes h= from the names of the fields present: each signed
// field once per occurrence (go-msgauth picks instances from the bottom up,
// RFC 6376 §5.4.2), plus once more for the over-signed ones.
func headerKeys(names []string) ([]string, error) {
	count := make(map[string]int)
	var lists []string // List-* names in order of first appearance
	for _, n := range names {
		l := strings.ToLower(n)
		if strings.HasPrefix(l, "list-") && count[l] == 0 && isToken(l) {
			lists = append(lists, l)
		}
		count[l]++
	}
	if count["from"] != 1 {
		return nil, ErrNoFrom
	}

	var keys []string
	add := func(name string) {
		l := strings.ToLower(name)
		n := count[l]
		if n > 0 && overSigned[l] {
			n++
		}
		for range n {
			keys = append(keys, l)
		}
	}
	for _, f := range signedFields {
		add(f)
	}
	for _, f := range lists {
		add(f)
	}
	return keys, nil
}

// isToken reports whether a field name can go into the colon-separated h=
// tag as is (RFC 6376 §3.5 hdr-name is an RFC 5322 field-name; we only take
// the letters, digits and hyphens real List-* names use, so no ';' or '='
// can break the tag list).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return s != ""
}
