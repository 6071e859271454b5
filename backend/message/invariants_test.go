package message

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// checkInvariants returns the violations of the contract of Parse by p, the
// result of parsing input with opts.
func checkInvariants(input []byte, p *Parsed, opts Options) []string {
	opts = opts.withDefaults()
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	size := int64(len(input))
	if p.Size != size {
		fail("Size = %d, want %d", p.Size, size)
	}
	if p.Envelope == nil || p.Structure == nil {
		fail("nil Envelope or Structure")
		return bad
	}
	top := p.Structure
	if top.HeaderOffset != 0 || top.EndOffset != size {
		fail("top offsets [%d, %d, %d], want header 0 and end %d", top.HeaderOffset, top.BodyOffset, top.EndOffset, size)
	}
	if top.BodyOffset >= 0 && top.BodyOffset <= size && !bytes.Equal(p.Header, input[:top.BodyOffset]) {
		fail("Header %q != input[:BodyOffset] %q", p.Header, input[:top.BodyOffset])
	}
	parts := 0
	var walk func(bs *mailboxv1.BodyStructure, path string, depth int, lo, hi int64)
	walk = func(bs *mailboxv1.BodyStructure, path string, depth int, lo, hi int64) {
		parts++
		if depth > opts.MaxDepth {
			fail("%s: depth %d > MaxDepth %d", path, depth, opts.MaxDepth)
		}
		h, b, e := bs.HeaderOffset, bs.BodyOffset, bs.EndOffset
		if !(lo <= h && h <= b && b <= e && e <= hi) {
			fail("%s: offsets [%d, %d, %d] not ordered within [%d, %d]", path, h, b, e, lo, hi)
		}
		if bs.Size != e-b {
			fail("%s: Size %d != end-body %d", path, bs.Size, e-b)
		}
		if bs.Type == "" || bs.Subtype == "" || bs.Type != strings.ToLower(bs.Type) || bs.Subtype != strings.ToLower(bs.Subtype) {
			fail("%s: bad type %q/%q", path, bs.Type, bs.Subtype)
		}
		if bs.Encoding == "" {
			fail("%s: empty encoding", path)
		}
		if bs.Lines < 0 || bs.Lines > bs.Size+1 {
			fail("%s: Lines %d for size %d", path, bs.Lines, bs.Size)
		}
		if bs.Type == "multipart" {
			if len(bs.Parts) == 0 {
				fail("%s: multipart without parts", path)
			}
		} else if len(bs.Parts) > 0 {
			fail("%s: %s/%s with parts", path, bs.Type, bs.Subtype)
		}
		prev := b
		for i, c := range bs.Parts {
			walk(c, fmt.Sprintf("%s.%d", path, i+1), depth+1, prev, e)
			prev = c.EndOffset
		}
		isMsg := bs.Type == "message" && (bs.Subtype == "rfc822" || bs.Subtype == "global")
		if isMsg != (bs.Message != nil) || isMsg != (bs.Envelope != nil) {
			fail("%s: %s/%s with message %v envelope %v", path, bs.Type, bs.Subtype, bs.Message != nil, bs.Envelope != nil)
		}
		if bs.Message != nil {
			if bs.Message.HeaderOffset != b || bs.Message.EndOffset != e {
				fail("%s: encapsulated message [%d, %d] != body [%d, %d]", path, bs.Message.HeaderOffset, bs.Message.EndOffset, b, e)
			}
			walk(bs.Message, path+".msg", depth+1, b, e)
		}
	}
	walk(top, "top", 1, 0, size)
	if parts > opts.MaxParts {
		fail("%d parts > MaxParts %d", parts, opts.MaxParts)
	}
	// proto.Marshal checks that every string is valid UTF-8.
	if _, err := proto.Marshal(top); err != nil {
		fail("marshal structure: %v", err)
	}
	if _, err := proto.Marshal(p.Envelope); err != nil {
		fail("marshal envelope: %v", err)
	}
	for name, s := range map[string]string{"SearchHeader": p.SearchHeader, "SearchBody": p.SearchBody} {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			fail("%s not valid UTF-8 or has NUL", name)
		}
	}
	if len(p.SearchBody) > opts.MaxSearchText {
		fail("SearchBody %d bytes > MaxSearchText %d", len(p.SearchBody), opts.MaxSearchText)
	}
	return bad
}

// windowDiff parses r again with a scanner window of window bytes and
// describes how the result differs from want (parsed with the default
// window), or returns "": the result must not depend on the window.
func windowDiff(r io.ReaderAt, size int64, opts Options, want *Parsed, window int) string {
	got, err := parse(r, size, opts, window)
	switch {
	case err != nil:
		return fmt.Sprintf("error %v", err)
	case got.Size != want.Size || !bytes.Equal(got.Header, want.Header) || !got.SentDate.Equal(want.SentDate):
		return fmt.Sprintf("size, header or date differ: %d %q %v", got.Size, got.Header, got.SentDate)
	case !proto.Equal(got.Envelope, want.Envelope):
		return fmt.Sprintf("envelope differs: %v", got.Envelope)
	case !proto.Equal(got.Structure, want.Structure):
		return fmt.Sprintf("structure differs: %v", got.Structure)
	case got.SearchHeader != want.SearchHeader || got.SearchBody != want.SearchBody:
		return fmt.Sprintf("search text differs: %q %q", got.SearchHeader, got.SearchBody)
	}
	return ""
}
