package imapserver

import (
	"bufio"
	"bytes"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// EncodeEnvelope returns an ENVELOPE (RFC 3501 section 7.4.2) in its wire
// form, as WriteEnvelope writes it on a connection where UTF8=ACCEPT is
// not enabled (subject and names as MIME encoded words; a UTF-8 address
// as a literal, which every client reads). A server can render an
// envelope once, when a message arrives, and send the bytes with
// WriteEnvelopeRaw on every FETCH (mailcluster addition).
func EncodeEnvelope(envelope *imap.Envelope) []byte {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	enc := imapwire.NewEncoder(bw, imapwire.ConnSideServer)
	writeEnvelope(enc, envelope)
	bw.Flush()
	return buf.Bytes()
}

// WriteEnvelopeRaw writes the message's envelope from the bytes that
// EncodeEnvelope returned (mailcluster addition). The caller vouches for
// them: they are written as they are.
func (w *FetchResponseWriter) WriteEnvelopeRaw(b []byte) {
	w.writeItemSep()
	w.enc.Atom("ENVELOPE").SP().Raw(b)
}
