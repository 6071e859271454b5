package imap

import (
	"bufio"
	"encoding/base64"
	"errors"
	"io"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// BINARY (RFC 3516, part of IMAP4rev2): a part with its content transfer
// encoding removed. The decoded size must precede the literal and is not
// stored, so an encoded part is read twice: once to count, once to send.
// Nothing is held in memory beyond a read buffer.

var errUnknownCTE = no(imap.ResponseCodeUnknownCTE, "Unknown content transfer encoding")

// partAt finds the body structure of an IMAP part path.
func partAt(bs *mailboxv1.BodyStructure, path []int) *mailboxv1.BodyStructure {
	for _, n := range path {
		if bs == nil || n < 1 {
			return nil
		}
		switch {
		case len(bs.Parts) > 0:
			if n > len(bs.Parts) {
				return nil
			}
			bs = bs.Parts[n-1]
		case bs.Message != nil && strings.EqualFold(bs.Type, "message"):
			// A part number inside message/rfc822 addresses the
			// encapsulated message's parts (or its body when it is not
			// multipart).
			inner := bs.Message
			if len(inner.Parts) > 0 {
				if n > len(inner.Parts) {
					return nil
				}
				bs = inner.Parts[n-1]
			} else if n == 1 {
				bs = inner
			} else {
				return nil
			}
		case n == 1:
			// The body of a non-multipart message is part 1.
		default:
			return nil
		}
	}
	return bs
}

// decoder returns a reader removing enc from r, or nil if enc is unknown.
func decoder(enc string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "", "7bit", "8bit", "binary":
		return r
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &base64Clean{r: bufio.NewReader(r)})
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	}
	return nil
}

// base64Clean drops what is not base64 alphabet (line breaks, spaces), as
// RFC 2045 section 6.8 asks of decoders.
type base64Clean struct{ r *bufio.Reader }

func (b *base64Clean) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c, err := b.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
			p[n] = c
			n++
		}
	}
	return n, nil
}

// bodyStream reads a GetBody stream as an io.Reader.
type bodyStream struct {
	recv func() (*mailboxv1.BodyChunk, error)
	buf  []byte
	seen *mailboxv1.BodyChunk // the chunk with the flags set_seen changed
	// total is the first chunk's total_size, got the octets received.
	total, got int64
	started    bool
	err        error // sticky: a reader that dropped one error sees it again
}

// Read reads the section's octets; a stream that ends before total_size
// octets came (or before its first chunk) is io.ErrUnexpectedEOF, not a
// shorter body.
func (b *bodyStream) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		ch, err := b.recv()
		if err == io.EOF && (!b.started || b.got != b.total) {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			b.err = err
			return 0, err
		}
		if !b.started {
			b.started, b.total = true, ch.TotalSize
		}
		b.got += int64(len(ch.Data))
		if ch.Flags != nil {
			b.seen = ch
		}
		b.buf = ch.Data
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

// openDecoded opens part's body, decoded. close must be called.
func (ss *session) openDecoded(m *mailboxv1.MessageMeta, part []int, setSeen bool) (r io.Reader, src *bodyStream, close func(), err error) {
	enc := ""
	if len(part) > 0 {
		bs := partAt(m.BodyStructure, part)
		if bs == nil {
			return nil, nil, nil, no(imap.ResponseCodeNonExistent, "No such body part")
		}
		if len(bs.Parts) > 0 || strings.EqualFold(bs.Type, "multipart") {
			return nil, nil, nil, no(imap.ResponseCodeCannot, "BINARY of a multipart is not defined")
		}
		enc = bs.Encoding
	}
	c, ctx, cancel, err := ss.rpc(true)
	if err != nil {
		return nil, nil, nil, ss.fail("fetch binary", err, nil)
	}
	req := &mailboxv1.GetBodyRequest{AccountId: ss.acct.ID, MailboxId: ss.sel.Load().mb.key.id, Uid: m.Uid, SetSeen: setSeen}
	for _, p := range part {
		req.Part = append(req.Part, uint32(p))
	}
	stream, err := c.GetBody(ctx, req)
	if err != nil {
		cancel()
		ss.srv.unreachable(c, err)
		return nil, nil, nil, ss.fail("fetch binary", err, errExpunged)
	}
	src = &bodyStream{recv: stream.Recv}
	r = decoder(enc, src)
	if r == nil {
		cancel()
		return nil, nil, nil, errUnknownCTE
	}
	return r, src, cancel, nil
}

// decodedSize counts the decoded octets of a part (BINARY.SIZE, and the
// first pass of BINARY).
func (ss *session) decodedSize(m *mailboxv1.MessageMeta, part []int, setSeen bool) (int64, *mailboxv1.BodyChunk, error) {
	r, src, done, err := ss.openDecoded(m, part, setSeen)
	if err != nil {
		return 0, nil, err
	}
	defer done()
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return 0, nil, ss.binaryErr(err)
	}
	return n, src.seen, nil
}

func (ss *session) binaryErr(err error) error {
	var ce base64.CorruptInputError
	if errors.As(err, &ce) || strings.Contains(err.Error(), "quotedprintable") {
		return no(imap.ResponseCodeCorruption, "Part content cannot be decoded")
	}
	return ss.fail("fetch binary", err, errExpunged)
}

// writeBinary writes BINARY[part]<partial> (two passes over the part) and
// BINARY.SIZE[part]. It returns the chunk with the new flags and MODSEQ
// when \Seen was set.
func (ss *session) writeBinary(rw *imapserver.FetchResponseWriter, m *mailboxv1.MessageMeta, options *imap.FetchOptions, setSeen bool) (*mailboxv1.BodyChunk, error) {
	var flags *mailboxv1.BodyChunk
	var failed error
	for _, s := range options.BinarySectionSize {
		n, _, err := ss.decodedSize(m, s.Part, false)
		if err != nil {
			failed = err
			continue
		}
		rw.WriteBinarySectionSize(s, uint32(min(n, 1<<32-1)))
	}
	for _, s := range options.BinarySection {
		seen := setSeen && !s.Peek && flags == nil
		total, f, err := ss.decodedSize(m, s.Part, seen)
		if err != nil {
			failed = err
			continue
		}
		if f != nil {
			flags = f
		}
		off, size := int64(0), total
		if p := s.Partial; p != nil {
			off = min(p.Offset, total)
			size = min(total-off, p.Size)
		}
		r, _, done, err := ss.openDecoded(m, s.Part, false)
		if err != nil {
			failed = err
			continue
		}
		wc := rw.WriteBinarySection(s, size)
		_, err = io.CopyN(io.Discard, r, off)
		if err == nil {
			var n int64
			n, err = io.CopyN(wc, r, size)
			ss.srv.metrics.bodyBytes.Add(float64(n))
		}
		done()
		if err != nil {
			// The part changed between the passes or the stream broke:
			// the literal cannot be completed.
			return nil, errBroken
		}
		if err := wc.Close(); err != nil {
			return nil, err
		}
	}
	return flags, failed
}
