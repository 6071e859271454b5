package pop3

// The wire codec: reading command lines, parsing commands and numbers,
// formatting responses, dot-stuffing multi-line responses (RFC 1939 section
// 3), cutting a message for TOP, and decoding SASL PLAIN (RFC 4616). It does
// no networking: everything works on byte slices, io.Writers and
// bufio.Readers, and every function is fuzzed (fuzz_test.go).

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"strconv"
	"strings"
)

// Codec errors.
var (
	// ErrLineTooLong: a line exceeds the limit. The rest of the line has not
	// been read; the connection cannot be resynchronised and is closed.
	ErrLineTooLong = errors.New("pop3: line too long")
	// ErrBadCommand: the line is not a command (empty, a keyword that is not
	// 3 or 4 letters, or control characters such as NUL).
	ErrBadCommand = errors.New("pop3: malformed command")
)

// RespCode is an extended response code (RFC 2449 section 8, RFC 3206).
type RespCode string

// Response codes.
const (
	// CodeNone: no code.
	CodeNone RespCode = ""
	// CodeAuth: the credentials are wrong (RFC 3206 section 4).
	CodeAuth RespCode = "AUTH"
	// CodeSysTemp: a temporary system problem (directory or backend
	// unavailable); try again later (RFC 3206 section 4).
	CodeSysTemp RespCode = "SYS/TEMP"
	// CodeSysPerm: a permanent problem that needs an administrator
	// (e.g. a disabled account) (RFC 3206 section 4).
	CodeSysPerm RespCode = "SYS/PERM"
	// CodeInUse: the maildrop is locked by another session (RFC 2449 8.1.1).
	// mailcluster never locks (see doc.go), so it is never sent.
	CodeInUse RespCode = "IN-USE"
	// CodeLoginDelay: logged in too soon after the last login (RFC 2449
	// 8.1.2). mailcluster enforces no login delay, so it is never sent.
	CodeLoginDelay RespCode = "LOGIN-DELAY"
)

// ReadLine reads one line from r and returns it without its line ending
// (CRLF, or a bare LF, which is tolerated). max bounds the line including
// its ending. The returned slice is a fresh copy. At EOF before a line
// ending, a partial line is an error (io.ErrUnexpectedEOF); no input at all
// is io.EOF.
func ReadLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, ErrLineTooLong
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// Command is a parsed command line.
type Command struct {
	// Name is the keyword in upper case ("RETR").
	Name string
	// Args are the arguments, separated by runs of spaces (RFC 1939 says
	// one space; clients that send more are tolerated).
	Args []string
	// Rest is everything after the keyword and the space after it, as sent:
	// PASS takes its password from here, so that it may contain spaces (as
	// Dovecot allows).
	Rest string
}

// ParseCommand parses a command line (without its line ending). Keywords
// are 3 or 4 ASCII letters, case-insensitive (RFC 1939 section 3). Control
// characters (NUL, CR, LF, DEL …; TAB is refused too) anywhere make the line
// ErrBadCommand; 8-bit bytes in arguments are passed through.
func ParseCommand(line []byte) (Command, error) {
	for _, c := range line {
		if c < 0x20 || c == 0x7f {
			return Command{}, ErrBadCommand
		}
	}
	name, rest, _ := bytes.Cut(line, []byte{' '})
	if len(name) < 3 || len(name) > 4 {
		return Command{}, ErrBadCommand
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return Command{}, ErrBadCommand
		}
	}
	cmd := Command{Name: strings.ToUpper(string(name)), Rest: string(rest)}
	cmd.Args = strings.Fields(cmd.Rest)
	return cmd, nil
}

// ParseNumber parses a message number or line count: decimal digits only
// (no sign, no spaces), at most 9 of them, so that the value fits an int on
// every platform. ok is false for anything else, including "-1" and "+1".
func ParseNumber(s string) (n int, ok bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.Atoi(s)
	return v, err == nil
}

// AppendOK appends a positive single-line response "+OK text" CRLF.
func AppendOK(b []byte, text string) []byte {
	b = append(b, "+OK"...)
	if text != "" {
		b = append(b, ' ')
		b = appendText(b, text)
	}
	return append(b, "\r\n"...)
}

// AppendErr appends a negative response "-ERR [CODE] text" CRLF.
func AppendErr(b []byte, code RespCode, text string) []byte {
	b = append(b, "-ERR"...)
	if code != CodeNone {
		b = append(b, " ["...)
		b = append(b, code...)
		b = append(b, ']')
	}
	if text != "" {
		b = append(b, ' ')
		b = appendText(b, text)
	}
	return append(b, "\r\n"...)
}

// appendText appends text with control characters replaced by '?', so that a
// response is always one line.
func appendText(b []byte, text string) []byte {
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c < 0x20 || c == 0x7f {
			c = '?'
		}
		b = append(b, c)
	}
	return b
}

// DotWriter writes the body of a multi-line response (RFC 1939 section 3):
// every line that starts with '.' gets one more '.', and Close writes the
// terminating ".CRLF". The bytes are otherwise passed through untouched:
// 8-bit content, long lines and line endings as stored. A line starts after
// every LF, so that a stored bare LF followed by '.' is stuffed too and no
// client, however it splits lines, can see an early terminator.
type DotWriter struct {
	w   io.Writer
	bol bool // at the beginning of a line
	n   int64
}

var dot = []byte{'.'}

// NewDotWriter returns a DotWriter at the beginning of a line.
func NewDotWriter(w io.Writer) *DotWriter { return &DotWriter{w: w, bol: true} }

// Write dot-stuffs p. It returns len(p) on success: the stuffing dots are
// not counted.
func (d *DotWriter) Write(p []byte) (n int, err error) {
	for len(p) > 0 {
		if d.bol && p[0] == '.' {
			if _, err := d.w.Write(dot); err != nil {
				return n, err
			}
		}
		seg := p
		d.bol = false
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			seg, d.bol = p[:i+1], true
		}
		m, err := d.w.Write(seg)
		n += m
		d.n += int64(m)
		if err != nil {
			return n, err
		}
		p = p[len(seg):]
	}
	return n, nil
}

// Written is the number of message octets written so far, without the
// stuffing dots and the terminator: what LIST reports for a whole message.
func (d *DotWriter) Written() int64 { return d.n }

// Close ends the response: a CRLF first if the data did not end with a line
// ending (the message's last line had none), then ".CRLF". It does not close
// the underlying writer.
func (d *DotWriter) Close() error {
	end := []byte(".\r\n")
	if !d.bol {
		end = []byte("\r\n.\r\n")
	}
	_, err := d.w.Write(end)
	return err
}

// TopFilter passes on the header of a message, the empty line after it and
// then at most Lines lines of the body (TOP msg n, RFC 1939 section 7), and
// drops the rest. A line ends with LF; the empty line that ends the header is
// "CRLF" or a bare "LF". A message without an empty line is all header and is
// passed on whole. Done reports when nothing more will be passed on, so that
// the caller can stop reading.
type TopFilter struct {
	w       io.Writer
	left    int  // body lines still to pass on
	body    bool // past the empty line
	lineLen int  // bytes of the current line so far (before LF)
	onlyCR  bool // the current line so far is exactly "\r"
	done    bool
}

// NewTopFilter returns a filter that writes to w the header and lines body
// lines.
func NewTopFilter(w io.Writer, lines int) *TopFilter {
	return &TopFilter{w: w, left: lines, done: false}
}

// Done reports that the filter has passed on all it will.
func (t *TopFilter) Done() bool { return t.done }

// Write passes on the part of p that belongs to the output. It always
// returns len(p) unless the underlying writer fails.
func (t *TopFilter) Write(p []byte) (int, error) {
	if t.done {
		return len(p), nil
	}
	if t.body && t.left == 0 {
		t.done = true
		return len(p), nil
	}
	end := -1 // index one past the last byte to pass on
	for i, c := range p {
		if c != '\n' {
			t.onlyCR = t.lineLen == 0 && c == '\r'
			t.lineLen++
			continue
		}
		empty := t.lineLen == 0 || (t.lineLen == 1 && t.onlyCR)
		t.lineLen, t.onlyCR = 0, false
		if !t.body {
			if empty {
				t.body = true
				if t.left == 0 {
					end = i + 1
					break
				}
			}
			continue
		}
		t.left--
		if t.left == 0 {
			end = i + 1
			break
		}
	}
	out := p
	if end >= 0 {
		out, t.done = p[:end], true
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// DecodePlain decodes a SASL PLAIN response (RFC 4616): base64 of
// authzid NUL authcid NUL passwd. authcid and passwd must not be empty.
func DecodePlain(resp string) (authzid, authcid, passwd string, err error) {
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		return "", "", "", errors.New("pop3: PLAIN response is not base64")
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 || len(parts[2]) == 0 {
		return "", "", "", errors.New("pop3: malformed PLAIN response")
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), nil
}
