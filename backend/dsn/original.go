package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// readHeaderSection reads original's header section: lines up to the first
// empty line (or the end), each with its line ending normalised to CRLF and
// any other CR replaced by a space. It stops before the first line that
// would take the result past max octets, and reads no further than that
// (plus bufio's read-ahead of at most 4 KiB).
func readHeaderSection(original io.Reader, max int) ([]byte, error) {
	br := bufio.NewReader(original)
	var out []byte
	for {
		// A line is needed only if it fits: read at most what could.
		line, complete, err := readLine(br, max-len(out)+2)
		if errors.Is(err, errLineTooLong) {
			return out, nil
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		content := bytes.TrimSuffix(line, []byte("\n"))
		content = bytes.TrimSuffix(content, []byte("\r"))
		if len(content) == 0 {
			// The empty line that ends the header, or the end of a
			// message that has no body.
			return out, nil
		}
		if len(out)+len(content)+2 > max {
			return out, nil
		}
		for _, c := range content {
			if c == '\r' {
				c = ' '
			}
			out = append(out, c)
		}
		out = append(out, '\r', '\n')
		if !complete {
			return out, nil
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line including its LF. complete is false when the
// input ended without LF. Once more than limit octets have been read
// without a LF it gives up with errLineTooLong, so memory stays bounded.
func readLine(br *bufio.Reader, limit int) (line []byte, complete bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		switch {
		case err == nil:
			return line, true, nil
		case err != bufio.ErrBufferFull:
			return line, false, err
		case len(line) > limit:
			return nil, false, errLineTooLong
		}
	}
}

// headerEncoding picks the Content-Transfer-Encoding of the copied header
// section: "7bit" when it is 7-bit text without NUL and every line fits in
// 998 octets (RFC 2045 §2.7), "quoted-printable" otherwise, which keeps
// 8-bit headers (RFC 6532) and hostile bytes intact without needing
// 8BITMIME and wraps long lines.
func headerEncoding(h []byte) string {
	for _, line := range bytes.Split(h, []byte("\r\n")) {
		if len(line) > 998 {
			return "quoted-printable"
		}
		for _, c := range line {
			if c == 0 || c >= 0x80 {
				return "quoted-printable"
			}
		}
	}
	return "7bit"
}
