package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

type EnhancedCode [3]int

// SMTPError specifies the error code, enhanced error code (if any) and
// message returned by the server.
type SMTPError struct {
	Code         int
	EnhancedCode EnhancedCode
	Message      string
}

// NoEnhancedCode is used to indicate that enhanced error code should not be
// included in response.
//
// Note that RFC 2034 requires an enhanced code to be included in all 2xx, 4xx
// and 5xx responses. This constant is exported for use by extensions, you
// should probably use EnhancedCodeNotSet instead.
var NoEnhancedCode = EnhancedCode{-1, -1, -1}

// EnhancedCodeNotSet is a nil value of EnhancedCode field in SMTPError, used
// to indicate that backend failed to provide enhanced status code. X.0.0 will
// be used (X is derived from error code).
var EnhancedCodeNotSet = EnhancedCode{0, 0, 0}

func (err *SMTPError) Error() string {
	s := fmt.Sprintf("SMTP error %03d", err.Code)
	if err.Message != "" {
		s += ": " + err.Message
	}
	return s
}

func (err *SMTPError) Temporary() bool {
	return err.Code/100 == 4
}

var ErrDataTooLarge = &SMTPError{
	Code:         552,
	EnhancedCode: EnhancedCode{5, 3, 4},
	Message:      "Maximum message size exceeded",
}

type dataReader struct {
	r     *bufio.Reader
	state int

	limited bool
	n       int64 // Maximum bytes remaining

	// mailcluster: maxLine, if positive, is the longest text line in bytes
	// including its CRLF (Server.MaxLineLength, when MaxCommandLineLength
	// is set). lineLen counts the bytes of the current line before its
	// CRLF, dot-stuffing included, as they are read; prevCR says that the
	// last byte read was a CR; err is the sticky ErrTooLongLine.
	maxLine int
	lineLen int
	prevCR  bool
	err     error
}

func newDataReader(c *Conn) *dataReader {
	dr := &dataReader{
		r:       c.text.R,
		maxLine: c.textLineLimit(),
	}

	if c.server.MaxMessageBytes > 0 {
		dr.limited = true
		dr.n = int64(c.server.MaxMessageBytes)
	}

	return dr
}

func (r *dataReader) Read(b []byte) (n int, err error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}

	// Code below is taken from net/textproto with only one modification to
	// not rewrite CRLF -> LF.

	// Run data through a simple state machine to
	// elide leading dots and detect End-of-Data (<CR><LF>.<CR><LF>) line.
	const (
		stateBeginLine = iota // beginning of line; initial state; must be zero
		stateDot              // read . at beginning of line
		stateDotCR            // read .\r at beginning of line
		stateCR               // read \r (possibly at end of line)
		stateData             // reading data in middle of line
		stateEOF              // reached .\r\n end marker line
	)
	for n < len(b) && r.state != stateEOF {
		// mailcluster: in the middle of a line, copy what is buffered up
		// to the next CR at once instead of byte by byte (the state
		// machine below only cares about CR, and about '.' and CR at the
		// start of a line). This was about 40% of an SMTP frontend's CPU.
		if r.state == stateData && !r.prevCR {
			if k := r.r.Buffered(); k > 0 {
				if k > len(b)-n {
					k = len(b) - n
				}
				buf, _ := r.r.Peek(k)
				i := bytes.IndexByte(buf, '\r')
				if i < 0 {
					i = len(buf)
				}
				if i > 0 {
					if r.maxLine > 0 {
						if r.lineLen+i > r.maxLine-2 {
							r.err = ErrTooLongLine
							err = r.err
							break
						}
						r.lineLen += i
					}
					copy(b[n:], buf[:i])
					r.r.Discard(i)
					n += i
					continue
				}
			}
		}
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		if r.maxLine > 0 {
			// A line ends with CRLF; a CR is text unless an LF
			// follows it.
			if c == '\n' && r.prevCR {
				r.lineLen = 0
			} else {
				if r.prevCR {
					r.lineLen++
				}
				if c != '\r' {
					r.lineLen++
				}
				if r.lineLen > r.maxLine-2 {
					r.err = ErrTooLongLine
					err = r.err
					break
				}
			}
			r.prevCR = c == '\r'
		}
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			r.state = stateData
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			r.state = stateData
		case stateData:
			if c == '\r' {
				r.state = stateCR
			}
		}
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}

	if r.limited {
		r.n -= int64(n)
	}
	return
}
