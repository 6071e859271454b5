package smtp_test

// Tests of mailcluster's changes to go-smtp (MAILCLUSTER.md): command line
// limits apart from the text line limit, and VRFY/EXPN answered by the
// session.

import (
	"bufio"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func withLimits(s *smtp.Server) {
	s.MaxCommandLineLength = 512
	s.MaxLineLength = 1000
}

// lineOf returns a command line of exactly n bytes with its CRLF.
func lineOf(prefix string, n int) string {
	return prefix + strings.Repeat("x", n-len(prefix)-2) + "\r\n"
}

func expectLine(t *testing.T, scanner *bufio.Scanner, prefix string) string {
	t.Helper()
	if !scanner.Scan() {
		t.Fatalf("no reply, want %q: %v", prefix, scanner.Err())
	}
	if !strings.HasPrefix(scanner.Text(), prefix) {
		t.Fatalf("reply %q, want %q", scanner.Text(), prefix)
	}
	return scanner.Text()
}

func TestCommandLineLimit(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t, withLimits)
	defer s.Close()
	defer c.Close()

	io.WriteString(c, lineOf("NOOP ", 512))
	expectLine(t, scanner, "250 ")
	io.WriteString(c, lineOf("NOOP ", 513))
	expectLine(t, scanner, "500 5.5.2 Line too long")
	// The session goes on, also after a line far longer than any limit.
	io.WriteString(c, "NOOP\r\n")
	expectLine(t, scanner, "250 ")
	io.WriteString(c, lineOf("NOOP ", 60000))
	expectLine(t, scanner, "500 5.5.2 Line too long")
	io.WriteString(c, "NOOP\r\n")
	expectLine(t, scanner, "250 ")
	// A bare-LF line is measured the same way.
	io.WriteString(c, "NOOP "+strings.Repeat("x", 600)+"\n")
	expectLine(t, scanner, "500 5.5.2 ")
	// Each counts as a protocol error: the fourth closes the connection.
	io.WriteString(c, lineOf("NOOP ", 513))
	expectLine(t, scanner, "500 5.5.2 ")
	expectLine(t, scanner, "500 5.5.1 Too many errors")
}

// A line that goes on far past its limit without ending is not read for
// ever: 500 5.4.0 and the connection is closed.
func TestCommandLineFlood(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t, withLimits)
	defer s.Close()
	defer c.Close()

	go io.WriteString(c, "NOOP "+strings.Repeat("x", 200000))
	expectLine(t, scanner, "500 5.4.0 ")
	if scanner.Scan() {
		t.Fatalf("connection open after a line flood: %q", scanner.Text())
	}
}

func TestCommandLineLimitMailParameters(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t, withLimits)
	defer s.Close()
	defer c.Close()

	// MAIL has room for its parameters: 512 + 26 (SIZE) + 16 (BODY) +
	// 500 (AUTH=).
	mail := "MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME AUTH="
	end := "@example.org\r\n"
	io.WriteString(c, mail+strings.Repeat("a", 1054-len(mail)-len(end))+end)
	expectLine(t, scanner, "250 ")
	io.WriteString(c, "RSET\r\n")
	expectLine(t, scanner, "250 ")
	io.WriteString(c, mail+strings.Repeat("a", 1055-len(mail)-len(end))+end)
	expectLine(t, scanner, "500 5.5.2 ")
	// RCPT has none here (no DSN).
	io.WriteString(c, "MAIL FROM:<a@example.org>\r\n")
	expectLine(t, scanner, "250 ")
	io.WriteString(c, lineOf("RCPT TO:<", 513))
	expectLine(t, scanner, "500 5.5.2 ")
	io.WriteString(c, "RCPT TO:<b@example.org>\r\n")
	expectLine(t, scanner, "250 ")
}

func TestCommandLineLimitAuth(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t, withLimits)
	defer s.Close()
	defer c.Close()

	// A long initial response (a 9000-byte password) is read whole.
	resp := base64.StdEncoding.EncodeToString([]byte("\x00username\x00" + strings.Repeat("p", 9000)))
	io.WriteString(c, "AUTH PLAIN "+resp+"\r\n")
	expectLine(t, scanner, "454 4.7.0 Invalid username or password")
	// Beyond 12288 bytes (RFC 4954 4): 500 5.5.6, and the session goes on.
	io.WriteString(c, lineOf("AUTH PLAIN ", 12289))
	expectLine(t, scanner, "500 5.5.6 ")
	io.WriteString(c, "NOOP\r\n")
	expectLine(t, scanner, "250 ")
	// The same for a response on its own line.
	io.WriteString(c, "AUTH PLAIN\r\n")
	expectLine(t, scanner, "334 ")
	io.WriteString(c, strings.Repeat("A", 12300)+"\r\n")
	expectLine(t, scanner, "500 5.5.6 ")
	io.WriteString(c, "AUTH PLAIN\r\n")
	expectLine(t, scanner, "334 ")
	io.WriteString(c, base64.StdEncoding.EncodeToString([]byte("\x00username\x00password"))+"\r\n")
	expectLine(t, scanner, "235 ")
}

func TestTextLineLimit(t *testing.T) {
	be, s, c, scanner, _ := testServerEhlo(t, withLimits)
	defer s.Close()
	defer c.Close()

	send := func(body string) {
		io.WriteString(c, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
		expectLine(t, scanner, "250 ")
		expectLine(t, scanner, "250 ")
		expectLine(t, scanner, "354 ")
		io.WriteString(c, body+".\r\n")
	}
	// Text lines may be 1000 bytes with CRLF, longer than commands; a
	// dot-stuffed line counts its dot.
	ok := strings.Repeat("y", 998) + "\r\n." + strings.Repeat("z", 997) + "\r\n"
	send(ok)
	expectLine(t, scanner, "250 ")
	if len(be.anonmsgs) != 1 || string(be.anonmsgs[0].Data) != strings.Repeat("y", 998)+"\r\n"+strings.Repeat("z", 997)+"\r\n" {
		t.Fatalf("messages: %d", len(be.anonmsgs))
	}
	// 1001 bytes: refused, and the connection is closed (the rest of the
	// message is never taken for commands).
	send(strings.Repeat("y", 999) + "\r\nNOOP\r\n")
	expectLine(t, scanner, "554 5.0.0 Error: transaction failed: smtp: too long a line")
	expectLine(t, scanner, "500 5.4.0 Too long line, closing connection")
	if scanner.Scan() {
		t.Fatalf("more after close: %q", scanner.Text())
	}
	if len(be.anonmsgs) != 1 {
		t.Fatalf("messages: %d", len(be.anonmsgs))
	}
}

// Without MaxCommandLineLength, upstream's single limit is unchanged: a
// command line over MaxLineLength closes the connection.
func TestCommandLineLimitUnset(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) { s.MaxLineLength = 1000 })
	defer s.Close()
	defer c.Close()
	io.WriteString(c, lineOf("NOOP ", 1000))
	expectLine(t, scanner, "250 ")
	io.WriteString(c, lineOf("NOOP ", 1001))
	expectLine(t, scanner, "500 5.4.0 ")
	if scanner.Scan() {
		t.Fatalf("more after close: %q", scanner.Text())
	}
}

type vrfySession struct {
	smtp.Session
}

func (vrfySession) Verify(arg string) (string, error) {
	switch arg {
	case "alice@example.org":
		return arg, nil
	case "remote@example.net":
		return "", &smtp.SMTPError{Code: 252, EnhancedCode: smtp.EnhancedCode{2, 5, 0}, Message: "Cannot verify"}
	}
	return "", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
}

func (vrfySession) Expand(arg string) ([]string, error) {
	switch arg {
	case "list@example.org":
		return []string{"alice@example.org", "bob@example.org"}, nil
	case "empty@example.org":
		return nil, nil
	}
	return nil, errors.New("internal")
}

func vrfyServer(vrfy, expn bool) serverConfigureFunc {
	return func(s *smtp.Server) {
		be := s.Backend
		s.Backend = smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
			sess, err := be.NewSession(c)
			return vrfySession{sess}, err
		})
		s.EnableVRFY, s.EnableEXPN = vrfy, expn
	}
}

func TestVRFYAndEXPN(t *testing.T) {
	// Off: upstream's replies, even though the session could answer.
	_, s, c, scanner, _ := testServerEhlo(t, vrfyServer(false, false))
	io.WriteString(c, "VRFY alice@example.org\r\nEXPN list@example.org\r\n")
	expectLine(t, scanner, "252 2.5.0 ")
	expectLine(t, scanner, "502 5.5.1 ")
	c.Close()
	s.Close()

	_, s, c, scanner, _ = testServerEhlo(t, vrfyServer(true, true))
	defer s.Close()
	defer c.Close()
	io.WriteString(c, "VRFY alice@example.org\r\n")
	expectLine(t, scanner, "250 2.1.5 <alice@example.org>")
	io.WriteString(c, "VRFY remote@example.net\r\n")
	expectLine(t, scanner, "252 2.5.0 Cannot verify")
	io.WriteString(c, "VRFY nobody@example.org\r\n")
	expectLine(t, scanner, "550 5.1.1 ")
	io.WriteString(c, "EXPN list@example.org\r\n")
	expectLine(t, scanner, "250-2.1.5 <alice@example.org>")
	expectLine(t, scanner, "250 2.1.5 <bob@example.org>")
	io.WriteString(c, "EXPN empty@example.org\r\n")
	expectLine(t, scanner, "550 5.2.4 ")
	io.WriteString(c, "NOOP\r\n")
	expectLine(t, scanner, "250 ")
}

// Before HELO there is no session: the default replies.
func TestVRFYBeforeHelo(t *testing.T) {
	_, s, c, scanner := testServerGreeted(t, vrfyServer(true, true))
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "VRFY alice@example.org\r\nEXPN list@example.org\r\n")
	expectLine(t, scanner, "252 ")
	expectLine(t, scanner, "502 ")
}
