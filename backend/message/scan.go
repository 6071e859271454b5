package message

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// peekLen is how many bytes of a line's beginning the scanner keeps for the
// parser to look at (header field names, boundary delimiters). RFC 5322 caps
// lines at 998 octets and RFC 2046 caps boundaries at 70, so this is enough for
// every well-formed line; longer lines are still measured exactly, only their
// tail is not kept.
const peekLen = 1024

// windowSize is the read window of the scanner. A message that fits is read
// with a single ReadAt.
const windowSize = 64 << 10

// scanner reads a message line by line through io.ReaderAt, reporting each
// line's exact byte offsets. Only a window of the message is in memory at a
// time, so non-text parts of any size are scanned without being held.
//
// A line ends after LF (bare LF is accepted as well as CRLF) or at the end of
// the input.
type scanner struct {
	r    io.ReaderAt
	size int64

	buf  []byte // window holding input bytes [base, base+n)
	base int64
	n    int
	long []byte // head of the current line when it is longer than the window

	pos int64 // offset of the next line to read
	err error // first read failure

	// The line most recently returned by next.
	start, end int64  // [start, end) including the line ending
	eol        int    // length of the line ending: 0 (end of input), 1 (LF) or 2 (CRLF)
	head       []byte // up to peekLen bytes of the line, without its ending
	back       bool   // unread was called: next returns the same line again

	// count is the number of lines consumed (returned by next and not
	// unread). lastEOL and lastEmpty describe the last consumed line; saved*
	// hold the values before it, restored by unread.
	count                int64
	lastEOL, savedEOL    int
	lastEmpty, savedEmpt bool
}

// windows recycles full-size scanner windows between parses.
var windows = sync.Pool{New: func() any { b := make([]byte, windowSize); return &b }}

// newScanner returns a scanner of the size octets of r reading window bytes at
// a time. Call release when done with it.
func newScanner(r io.ReaderAt, size int64, window int) *scanner {
	if window == windowSize && size >= windowSize {
		return &scanner{r: r, size: size, buf: *windows.Get().(*[]byte)}
	}
	return &scanner{r: r, size: size, buf: make([]byte, min(int64(window), size))}
}

// release recycles the scanner's window; the scanner and every slice of the
// window (line heads, views) must not be used afterwards.
func (s *scanner) release() {
	if len(s.buf) == windowSize {
		b := s.buf
		windows.Put(&b)
	}
	s.buf, s.n = nil, 0
}

// next advances to the next line. It returns false at the end of the input or
// after a read failure (recorded in s.err).
func (s *scanner) next() bool {
	if s.back {
		s.back = false
	} else if !s.read() {
		return false
	}
	s.count++
	s.savedEOL, s.savedEmpt = s.lastEOL, s.lastEmpty
	s.lastEOL = s.eol
	s.lastEmpty = s.end-s.start == int64(s.eol)
	return true
}

// unread pushes the line returned by the last call to next back, so that the
// following call to next returns it again. It must be called at most once
// after each successful next.
func (s *scanner) unread() {
	s.back = true
	s.count--
	s.lastEOL, s.lastEmpty = s.savedEOL, s.savedEmpt
}

// fill reads the window starting at offset off, keeping bytes already held
// from off on.
func (s *scanner) fill(off int64) bool {
	keep := 0
	if off >= s.base && off < s.base+int64(s.n) {
		keep = copy(s.buf, s.buf[off-s.base:s.n])
	}
	s.base, s.n = off, keep
	want := int64(len(s.buf) - keep)
	if rest := s.size - (off + int64(keep)); rest < want {
		want = rest
	}
	if want <= 0 {
		return true
	}
	m, err := s.r.ReadAt(s.buf[keep:keep+int(want)], off+int64(keep))
	s.n += m
	if int64(m) < want {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		s.err = fmt.Errorf("message: read at offset %d: %w", off+int64(keep)+int64(m), err)
		return false
	}
	return true
}

// read locates the line starting at s.pos.
func (s *scanner) read() bool {
	if s.err != nil || s.pos >= s.size {
		return false
	}
	start := s.pos
	if start < s.base || start >= s.base+int64(s.n) {
		if !s.fill(start) {
			return false
		}
	}
	i := int(start - s.base)
	for {
		if j := bytes.IndexByte(s.buf[i:s.n], '\n'); j >= 0 {
			end := i + j + 1
			eol := 1
			if j > 0 && s.buf[end-2] == '\r' {
				eol = 2
			}
			s.setLine(start, s.base+int64(end), eol, s.buf[i:end-eol])
			return true
		}
		if s.base+int64(s.n) >= s.size {
			s.setLine(start, s.size, 0, s.buf[i:s.n])
			return true
		}
		if i == 0 {
			return s.readLong(start)
		}
		if !s.fill(start) {
			return false
		}
		i = 0
	}
}

// readLong handles a line longer than the window, which starts at buf[0]
// (offset start): it keeps the line's first peekLen bytes and slides the
// window until the line ends.
func (s *scanner) readLong(start int64) bool {
	s.long = append(s.long[:0], s.buf[:min(s.n, peekLen)]...)
	prevCR := s.buf[s.n-1] == '\r'
	for {
		if !s.fill(s.base + int64(s.n)) {
			return false
		}
		if len(s.long) < peekLen {
			s.long = append(s.long, s.buf[:min(s.n, peekLen-len(s.long))]...)
		}
		if j := bytes.IndexByte(s.buf[:s.n], '\n'); j >= 0 {
			eol := 1
			if (j > 0 && s.buf[j-1] == '\r') || (j == 0 && prevCR) {
				eol = 2
			}
			s.setLine(start, s.base+int64(j+1), eol, s.long)
			return true
		}
		if s.base+int64(s.n) >= s.size {
			s.setLine(start, s.size, 0, s.long)
			return true
		}
		prevCR = s.buf[s.n-1] == '\r'
	}
}

// setLine records the line [start, end) ending in eol bytes. head holds the
// line's first bytes; it is cut to the line's content and to peekLen, so that
// it does not depend on the window size.
func (s *scanner) setLine(start, end int64, eol int, head []byte) {
	if content := end - start - int64(eol); int64(len(head)) > content {
		head = head[:content]
	}
	if len(head) > peekLen {
		head = head[:peekLen]
	}
	s.start, s.end, s.eol, s.head = start, end, eol, head
	s.pos = end
}

// offset returns the offset of the next line next would return.
func (s *scanner) offset() int64 {
	if s.back {
		return s.start
	}
	return s.pos
}

var dashLine = []byte("\n--")

// skipPlain consumes, as if by calls to next, the complete lines from the
// current position that are already in the window and do not start with
// "--", so that they cannot be boundary lines. It lets bodies be skipped with
// bulk byte searches instead of line by line. It does nothing when a line was
// unread. After it, s.start, s.end, s.eol and s.head are stale and unread
// must not be called before the next call to next.
func (s *scanner) skipPlain() {
	if s.back || s.pos < s.base || s.pos >= s.base+int64(s.n) {
		return
	}
	buf := s.buf[:s.n]
	i := int(s.pos - s.base)
	// Find the first "--" at the start of a line; "-" is rare in text and
	// absent from base64, so this is one vectorised search per window.
	stop := -1 // the region [i, stop) holds complete lines only
	for k := i; stop < 0; {
		j := bytes.Index(buf[k:], dashLine[1:])
		if j < 0 {
			break
		}
		if k += j; k == i || buf[k-1] == '\n' {
			stop = k
		}
		k++
	}
	if stop < 0 {
		stop = bytes.LastIndexByte(buf[i:], '\n') + i + 1
	}
	if stop <= i {
		return
	}
	region := buf[i:stop]
	last := region[bytes.LastIndexByte(region[:len(region)-1], '\n')+1:]
	eol := 1
	if len(last) >= 2 && last[len(last)-2] == '\r' {
		eol = 2
	}
	s.count += int64(bytes.Count(region, dashLine[:1]))
	s.lastEOL, s.lastEmpty = eol, len(last) == eol
	s.pos = s.base + int64(stop)
}
