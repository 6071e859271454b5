// Package message parses a stored mail message once, at delivery, into
// everything IMAP needs without reading the message again: the header block,
// ENVELOPE, BODYSTRUCTURE with byte offsets of every part, the sent date, and
// the decoded text used by SEARCH (DESIGN.md rule 4).
//
// Parse is pure: it reads the message through io.ReaderAt, stores nothing,
// never panics and never fails on malformed input (RFC 5322 or MIME
// violations give a best-effort structure). It is safe for concurrent use.
//
// # Offsets
//
// Every BodyStructure carries offsets into the message as stored:
// the part's MIME header is [HeaderOffset, BodyOffset) and its body is
// [BodyOffset, EndOffset), Size == EndOffset-BodyOffset. For the top level
// HeaderOffset is 0 and EndOffset is the message size. For a child of a
// multipart the header starts just after the boundary line and the body ends
// before the line ending that precedes the next boundary line (RFC 2046
// §5.1.1: that line ending belongs to the boundary). For a message/rfc822
// part, Message describes the encapsulated message: Message.HeaderOffset ==
// BodyOffset and Message.EndOffset == EndOffset. So with IMAP section numbers
// (RFC 3501 §6.4.5):
//
//	BODY[N]        [part.BodyOffset, part.EndOffset)
//	BODY[N.MIME]   [part.HeaderOffset, part.BodyOffset)
//	BODY[N.HEADER] [part.Message.HeaderOffset, part.Message.BodyOffset)  (N is message/rfc822)
//	BODY[N.TEXT]   [part.Message.BodyOffset, part.Message.EndOffset)
//	BODY[HEADER]   [0, Structure.BodyOffset) == Parsed.Header
//	BODY[TEXT]     [Structure.BodyOffset, Size)
//
// Section N.M of a message/rfc822 part N is found in part.Message (its Parts
// when it is a multipart, else part.Message itself is section N.1). A
// non-multipart message has only section 1, which is Structure itself.
// HEADER.FIELDS and HEADER.FIELDS.NOT are taken from the HEADER range.
//
// Offsets and sizes count the bytes as stored. IMAP sends CRLF line endings
// and RFC822.SIZE and BODYSTRUCTURE sizes must match what is sent, so a
// message received with bare LF endings should be converted to CRLF before it
// is stored and parsed; Parse itself accepts either.
//
// # Why a scanner of its own
//
// go-message reads entities as streams and does not report where a header
// or body lies in the input, and it stops at the first malformed header line.
// The boundaries and header blocks are therefore found by a small line
// scanner here; go-message's charset package supplies the charset decoders,
// used for body text, RFC 2231 parameters, and (through mime.WordDecoder and
// net/mail) RFC 2047 encoded-words in headers and addresses.
package message

import (
	"bytes"
	"io"
	"strings"
	"time"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Defaults for zero Options fields.
const (
	DefaultMaxSearchText = 256 << 10
	DefaultMaxDepth      = 50
	DefaultMaxParts      = 10000

	// maxMaxDepth bounds MaxDepth whatever the caller asks, because the
	// parser recurses once per level.
	maxMaxDepth = 1000
	// maxBoundary is the longest boundary accepted (RFC 2046 allows 70).
	maxBoundary = 200
)

// Options bound the work; zero values pick the defaults.
type Options struct {
	MaxSearchText int // bytes of decoded body text kept for SEARCH; default 256 KiB
	MaxDepth      int // MIME nesting depth parsed; deeper parts are treated as opaque leaves; default 50
	MaxParts      int // total parts described; default 10000
}

func (o Options) withDefaults() Options {
	if o.MaxSearchText <= 0 {
		o.MaxSearchText = DefaultMaxSearchText
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	o.MaxDepth = min(o.MaxDepth, maxMaxDepth)
	if o.MaxParts <= 0 {
		o.MaxParts = DefaultMaxParts
	}
	return o
}

// Parsed is what the backend stores about a message. All strings are valid
// UTF-8 without NUL characters.
type Parsed struct {
	Size         int64                    // octets of the message as stored
	Header       []byte                   // raw top-level header block, including the blank line that ends it (if any)
	Envelope     *mailboxv1.Envelope      // RFC 3501 §7.4.2 ENVELOPE of the top-level header
	Structure    *mailboxv1.BodyStructure // RFC 3501 §7.4.2 BODYSTRUCTURE with offsets
	SentDate     time.Time                // from the Date header; zero if absent or unparseable
	SearchHeader string                   // every header field, decoded to UTF-8 (RFC 2047), one "Name: value\n" per field, unfolded
	SearchBody   string                   // decoded text (transfer-encoding and charset) of text/* parts, capped at MaxSearchText; HTML may be included as-is
}

// Parse parses the size octets of r. It returns an error only when reading r
// fails (including r holding fewer than size octets); malformed messages are
// parsed best-effort. A negative size is treated as 0.
//
// Structure follows RFC 3501 §7.4.2 / RFC 9051 §7.5.2 with these choices:
//
//   - Type and subtype are lower case. A missing or invalid Content-Type gives
//     text/plain with charset=us-ascii (RFC 2045 §5.2), or message/rfc822 for
//     a child of multipart/digest (RFC 2046 §5.1.5). Encoding is lower case,
//     default "7bit".
//   - A multipart always has at least one part, as IMAP requires: one whose
//     boundary never appears gets a single text/plain part spanning its whole
//     body. A multipart without a usable boundary parameter is text/plain.
//   - message/rfc822 and message/global always have Envelope and Message.
//   - A multipart or message beyond MaxDepth or MaxParts, and a message/rfc822
//     with a base64 or quoted-printable encoding, are described as an opaque
//     application/octet-stream leaf (offsets and size stay exact). Parts past
//     MaxParts are left out of their parent's Parts.
//   - Lines is the number of text lines of the body (a final line without a
//     line ending counts), set for text/*, message/rfc822 and message/global.
//   - Bare LF line endings are accepted; offsets always index the input.
//
// SearchBody joins, in order and separated by "\n", the decoded text of text/*
// parts and the decoded header fields of encapsulated messages (so that SEARCH
// BODY finds a forwarded message's sender). At most about 4*MaxSearchText
// bytes of each text part are read; other parts are only scanned for
// boundaries, through a 64 KiB window.
func Parse(r io.ReaderAt, size int64, opts Options) (*Parsed, error) {
	return parse(r, size, opts, windowSize)
}

// parse is Parse with the scanner window as a parameter, so that tests can
// check that the result does not depend on it.
func parse(r io.ReaderAt, size int64, opts Options, window int) (*Parsed, error) {
	size = max(size, 0)
	p := &parser{sc: newScanner(r, size, window), opts: opts.withDefaults()}
	defer p.sc.release()
	top, h, _ := p.entity(1, false, false)
	if p.sc.err != nil {
		return nil, p.sc.err
	}
	out := &Parsed{
		Size:         size,
		Header:       p.topHeader,
		Envelope:     envelope(h),
		Structure:    top,
		SearchHeader: searchHeader(h),
	}
	if d := h.get("Date"); d != "" {
		if t, ok := parseDate(d); ok {
			out.SentDate = t
		}
	}
	body, err := p.searchBody()
	if err != nil {
		return nil, err
	}
	out.SearchBody = body
	return out, nil
}

// searchItem is a piece of SearchBody in message order: a text part to decode,
// or already decoded text.
type searchItem struct {
	part    *mailboxv1.BodyStructure
	charset string
	text    string
}

type parser struct {
	sc        *scanner
	opts      Options
	parts     int          // parts described so far
	bounds    []string     // boundaries of the enclosing multiparts, innermost last
	items     []searchItem // SearchBody pieces
	topHeader []byte
}

// entity parses the entity whose header starts at the scanner position. It
// consumes the input up to its end or to a boundary line of an enclosing
// multipart, which it leaves unread. digest selects the multipart/digest
// default type; encapsulated marks the top of a message/rfc822 body, whose
// header fields go to SearchBody. described is false when MaxParts was
// reached: the part was scanned but must be left out.
func (p *parser) entity(depth int, digest, encapsulated bool) (bs *mailboxv1.BodyStructure, h header, described bool) {
	s := p.sc
	described = p.parts < p.opts.MaxParts
	if described {
		p.parts++
	}
	hstart := s.offset()
	hend := p.readHeader()
	var hs string
	if depth == 1 {
		p.topHeader = p.readRange(hstart, hend)
		hs = string(p.topHeader)
	} else {
		hs = string(p.view(hstart, hend))
	}
	h = parseHeader(hs)
	if encapsulated && described {
		p.items = append(p.items, searchItem{text: searchHeader(h)})
	}

	bs = &mailboxv1.BodyStructure{HeaderOffset: hstart, BodyOffset: hend}
	boundary := describe(bs, h, digest)
	room := described && depth < p.opts.MaxDepth && p.parts < p.opts.MaxParts
	c0 := s.count
	switch {
	case bs.Type == "multipart":
		if room {
			p.multipart(bs, boundary, depth)
		} else {
			opaque(bs)
			p.skip()
		}
	case isMessage(bs):
		switch {
		case bs.Encoding != "7bit" && bs.Encoding != "8bit" && bs.Encoding != "binary":
			opaque(bs)
			p.skip()
		case room:
			inner, ih, _ := p.entity(depth+1, false, true)
			bs.Message = inner
			bs.Envelope = envelope(ih)
		default:
			opaque(bs)
			p.skip()
		}
	default:
		p.skip()
	}

	// A composite part ends no earlier than its last child, which may sit
	// past the line ending that precedes the boundary in malformed input
	// ("--inner\r\n--outer": the empty child starts after that line ending).
	minEnd := hend
	if n := len(bs.Parts); n > 0 {
		minEnd = bs.Parts[n-1].EndOffset
	}
	if bs.Message != nil {
		minEnd = bs.Message.EndOffset
	}
	var lines int64
	bs.EndOffset, lines = p.stop(minEnd, c0)
	bs.Size = bs.EndOffset - bs.BodyOffset
	if bs.Type == "text" || isMessage(bs) {
		bs.Lines = lines
	}
	if bs.Type == "multipart" && len(bs.Parts) == 0 {
		// No boundary line: the body is shown as one text part.
		p.parts++
		bs.Parts = []*mailboxv1.BodyStructure{{
			Type: "text", Subtype: "plain", Params: map[string]string{"charset": "us-ascii"},
			Encoding: "7bit", Size: bs.Size, Lines: lines,
			HeaderOffset: bs.BodyOffset, BodyOffset: bs.BodyOffset, EndOffset: bs.EndOffset,
		}}
		p.items = append(p.items, searchItem{part: bs.Parts[0]})
	}
	if described && bs.Type == "text" {
		p.items = append(p.items, searchItem{part: bs, charset: bs.Params["charset"]})
	}
	return bs, h, described
}

func isMessage(bs *mailboxv1.BodyStructure) bool {
	return bs.Type == "message" && (bs.Subtype == "rfc822" || bs.Subtype == "global")
}

// opaque turns a composite part that is not descended into into a leaf.
func opaque(bs *mailboxv1.BodyStructure) {
	bs.Type, bs.Subtype, bs.Params = "application", "octet-stream", nil
}

// multipart parses the body of a multipart entity (RFC 2046 §5.1.1):
// preamble, parts separated by delimiter lines, close delimiter, epilogue. A
// missing close delimiter ends the multipart at the end of the input or at an
// enclosing boundary.
func (p *parser) multipart(bs *mailboxv1.BodyStructure, boundary string, depth int) {
	s := p.sc
	p.bounds = append(p.bounds, boundary)
	own := len(p.bounds) - 1
	closed := false
	digest := bs.Subtype == "digest"
	for s.next() {
		i, isClose := p.boundary(s.head)
		if i < 0 {
			continue // preamble
		}
		if i != own {
			s.unread()
			break
		}
		if isClose {
			closed = true
			break
		}
		child, _, described := p.entity(depth+1, digest, false)
		if described {
			bs.Parts = append(bs.Parts, child)
		}
	}
	p.bounds = p.bounds[:own]
	if closed {
		p.skip() // epilogue
	}
}

// readHeader consumes the header block at the scanner position and returns
// where it ends (after the blank line, if any). The block also ends before a
// boundary line of an enclosing multipart, and is empty when the first line is
// not a header field (a part or message without header) unless it is an mbox
// "From " line (RFC 4155), kept in the header. Later lines that are not header
// fields stay in the header, as the blank line ends it.
func (p *parser) readHeader() int64 {
	s := p.sc
	first := true
	for s.next() {
		if i, _ := p.boundary(s.head); i >= 0 || (first && len(s.head) > 0 && fieldNameLen(s.head) == 0 && !bytes.HasPrefix(s.head, []byte("From "))) {
			s.unread()
			return s.start
		}
		if len(s.head) == 0 && s.end-s.start == int64(s.eol) {
			return s.end
		}
		first = false
	}
	return s.pos
}

// skip consumes body lines up to the end of the input or to a boundary line
// of an enclosing multipart, which it leaves unread.
func (p *parser) skip() {
	s := p.sc
	for {
		s.skipPlain()
		if !s.next() {
			return
		}
		if i, _ := p.boundary(s.head); i >= 0 {
			s.unread()
			return
		}
	}
}

// stop returns the end offset and line count of a body when the scanner had
// consumed c0 lines at its start and is now at the end of the input or at an
// unread boundary line. The end is at least minEnd (the body's start, or the
// end of its last child).
func (p *parser) stop(minEnd, c0 int64) (end, lines int64) {
	s := p.sc
	lines = s.count - c0
	if !s.back {
		return max(s.pos, minEnd), lines
	}
	// The line ending before the boundary line belongs to the boundary.
	end = s.start - int64(s.lastEOL)
	if lines > 0 && s.lastEmpty {
		lines--
	}
	return max(end, minEnd), lines
}

// boundary reports which enclosing boundary (index into p.bounds, innermost
// first) line is a delimiter of, -1 if none, and whether it is a close
// delimiter. A delimiter line is "--" boundary, optionally "--", then only
// linear white space (RFC 2046 §5.1.1).
func (p *parser) boundary(line []byte) (int, bool) {
	if len(line) < 3 || line[0] != '-' || line[1] != '-' {
		return -1, false
	}
	for i := len(p.bounds) - 1; i >= 0; i-- {
		b := p.bounds[i]
		if len(line) < 2+len(b) || string(line[2:2+len(b)]) != b {
			continue
		}
		rest := line[2+len(b):]
		isClose := len(rest) >= 2 && rest[0] == '-' && rest[1] == '-'
		if isClose {
			rest = rest[2:]
		}
		if isWhite(rest) {
			return i, isClose
		}
	}
	return -1, false
}

func isWhite(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// view returns the input bytes [a, b), valid until the scanner reads again.
// It must not be modified.
func (p *parser) view(a, b int64) []byte {
	if s := p.sc; a >= s.base && b <= s.base+int64(s.n) && b >= a {
		return s.buf[a-s.base : b-s.base]
	}
	return p.readRange(a, b)
}

// readRange returns a copy of the input bytes [a, b).
func (p *parser) readRange(a, b int64) []byte {
	if b <= a {
		return nil
	}
	s := p.sc
	out := make([]byte, b-a)
	if a >= s.base && b <= s.base+int64(s.n) {
		copy(out, s.buf[a-s.base:b-s.base])
		return out
	}
	if n, err := s.r.ReadAt(out, a); n < len(out) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if s.err == nil {
			s.err = err
		}
		return out[:n]
	}
	return out
}

// describe fills the body fields of bs from its MIME header and returns the
// boundary of a multipart.
func describe(bs *mailboxv1.BodyStructure, h header, digest bool) (boundary string) {
	typ, params, boundary, ok := parseParams(h.get("Content-Type"))
	t, sub, _ := strings.Cut(typ, "/")
	if t == "multipart" && (boundary == "" || len(boundary) > maxBoundary) {
		ok = false
	}
	switch {
	case ok && sub != "":
		bs.Type, bs.Subtype, bs.Params = t, sub, params
	case digest:
		bs.Type, bs.Subtype = "message", "rfc822"
	default:
		bs.Type, bs.Subtype = "text", "plain"
		bs.Params = map[string]string{"charset": "us-ascii"}
	}
	bs.Encoding = "7bit"
	if f := strings.Fields(flatten(h.get("Content-Transfer-Encoding"), true)); len(f) > 0 {
		bs.Encoding = clean(strings.ToLower(f[0]))
	}
	bs.Id = clean(h.get("Content-ID"))
	bs.Description = clean(h.get("Content-Description"))
	bs.Md5 = clean(h.get("Content-MD5"))
	bs.Location = clean(strings.Join(strings.Fields(h.get("Content-Location")), ""))
	if d, dp, _, ok := parseParams(h.get("Content-Disposition")); ok && !strings.Contains(d, "/") {
		bs.Disposition, bs.DispositionParams = d, dp
	}
	for _, l := range strings.Split(flatten(h.get("Content-Language"), true), ",") {
		if l = strings.TrimSpace(l); l != "" {
			bs.Language = append(bs.Language, clean(l))
		}
	}
	return boundary
}

// envelope builds the IMAP ENVELOPE of a message header (RFC 3501 §7.4.2):
// Sender and Reply-To default to From when absent or empty.
func envelope(h header) *mailboxv1.Envelope {
	env := &mailboxv1.Envelope{
		Date:      clean(h.get("Date")),
		Subject:   decodeText(h.get("Subject")),
		From:      parseAddressList(h.get("From")),
		Sender:    parseAddressList(h.get("Sender")),
		ReplyTo:   parseAddressList(h.get("Reply-To")),
		To:        parseAddressList(h.get("To")),
		Cc:        parseAddressList(h.get("Cc")),
		Bcc:       parseAddressList(h.get("Bcc")),
		InReplyTo: clean(h.get("In-Reply-To")),
		MessageId: clean(h.get("Message-ID")),
	}
	if len(env.Sender) == 0 {
		env.Sender = copyAddresses(env.From)
	}
	if len(env.ReplyTo) == 0 {
		env.ReplyTo = copyAddresses(env.From)
	}
	return env
}

func copyAddresses(l []*mailboxv1.Address) []*mailboxv1.Address {
	if len(l) == 0 {
		return nil
	}
	out := make([]*mailboxv1.Address, len(l))
	for i, a := range l {
		out[i] = &mailboxv1.Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host, GroupStart: a.GroupStart, GroupEnd: a.GroupEnd}
	}
	return out
}

// searchHeader renders the header fields as "Name: value\n" lines with
// values decoded to UTF-8.
func searchHeader(h header) string {
	var b strings.Builder
	for _, f := range h {
		b.WriteString(f.name)
		b.WriteString(": ")
		b.WriteString(decodeText(f.value))
		b.WriteByte('\n')
	}
	return b.String()
}

// searchBody decodes the collected text parts into at most MaxSearchText
// bytes. Only a bounded prefix of each part is read.
func (p *parser) searchBody() (string, error) {
	limit := p.opts.MaxSearchText
	estimate := 0
	for _, it := range p.items {
		estimate += len(it.text) + 1
		if it.part != nil {
			estimate += int(min(it.part.Size, int64(limit)))
		}
	}
	var b strings.Builder
	b.Grow(min(estimate, limit))
	for _, it := range p.items {
		rem := limit - b.Len()
		if b.Len() > 0 {
			rem--
		}
		if rem <= 0 {
			break
		}
		if it.part != nil && it.part.Size == 0 || it.part == nil && it.text == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		if it.part == nil {
			b.WriteString(truncate(it.text, rem))
			continue
		}
		end := min(it.part.EndOffset, it.part.BodyOffset+int64(rem)*4+1024)
		raw := p.view(it.part.BodyOffset, end)
		if p.sc.err != nil {
			return "", p.sc.err
		}
		appendUTF8(&b, it.charset, decodeTransfer(it.part.Encoding, raw), rem)
	}
	return b.String(), nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
