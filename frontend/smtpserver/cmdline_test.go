package smtpserver_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"mailcluster/frontend"
)

// line returns prefix padded with x to exactly n bytes with the CRLF.
func line(prefix string, n int) string {
	return prefix + strings.Repeat("x", n-len(prefix)-2) + "\r\n"
}

// Command lines are limited to -smtp-max-command-line (512 with CRLF, RFC
// 5321 4.5.3.1.4), text lines to -smtp-max-line-length (1000, 4.5.3.1.6).
// A longer command gets 500 5.5.2 and the session goes on; a longer text
// line refuses the message and closes the connection, as before.
func TestCommandLineLimit(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.send(line("NOOP ", 512))
	cn.expect("250 ")
	cn.send(line("NOOP ", 513))
	cn.expect("500 5.5.2 Line too long")
	cn.cmd("NOOP", "250 ")
	cn.send(line("RCPT TO:<", 513))
	cn.expect("500 5.5.2 ")
	// MAIL has room for its parameters (RFC 1870, RFC 4954 AUTH=, …).
	cn.send("MAIL FROM:<sender@remote.test> SIZE=100 BODY=8BITMIME AUTH=" + strings.Repeat("a", 500) + "@remote.test\r\n")
	cn.expect("250 ")
	cn.cmd("RSET", "250 ")
	// A text line of 1000 bytes with CRLF is stored as sent.
	long := message("long line", strings.Repeat("y", 998)+"\r\n")
	cn.mustSend(alice, long)
	if _, rest := stripReceived(t, c.inbox(alice)[0]); string(rest) != long {
		t.Fatal("stored message differs")
	}
	// 1001 bytes: refused, connection closed, nothing stored.
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.cmd("DATA", "354 ")
	cn.send(message("too long", strings.Repeat("y", 999)+"\r\nRSET\r\n") + ".\r\n")
	cn.expect("500 5.5.2 ")
	cn.expect("500 5.4.0 ")
	if !cn.closed() {
		t.Fatal("connection open after a 1001-byte text line")
	}
	if n := c.count(alice); n != 1 {
		t.Fatalf("%d messages stored", n)
	}
	// -smtp-max-command-line is a setting.
	c = newCluster(t, options{backends: 1, mod: func(cfg *frontend.Config) { cfg.SMTP.MaxCommandLine = 600 }})
	cn = c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.send(line("NOOP ", 600))
	cn.expect("250 ")
	cn.send(line("NOOP ", 601))
	cn.expect("500 5.5.2 ")
	cn.cmd("QUIT", "221 ")
	assertNoInternalText(t, c)
}

// AUTH lines may be longer than commands (RFC 4954 4: 12288 octets): a
// long password (the directory takes up to 1024 bytes) works as an initial
// response and as a response of its own; a longer line gets 500 5.5.6 and
// the session goes on.
func TestLongAuth(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	password := strings.Repeat("p", 1024)
	c.user("long", "b1", "userPassword: "+password)
	ir := plain("long", password)
	if len("AUTH PLAIN "+ir+"\r\n") <= 1000 {
		t.Fatal("test line too short")
	}
	cn := c.dial(frontend.ListenerSubmissions)
	cn.cmd("EHLO laptop", "250-")
	cn.send(line("AUTH PLAIN ", 12289))
	cn.expect("500 5.5.6 ")
	cn.cmd("NOOP", "250 ")
	cn.cmd("AUTH PLAIN", "334 ")
	cn.send(strings.Repeat("A", 13000) + "\r\n")
	cn.expect("500 5.5.6 ")
	cn.cmd("AUTH PLAIN "+ir, "235 ")
	cn.cmd("MAIL FROM:<long@"+domain+">", "250 ")

	cn = c.dial(frontend.ListenerSubmissions)
	cn.cmd("EHLO laptop", "250-")
	cn.cmd("AUTH PLAIN", "334 ")
	cn.cmd(ir, "235 ")
	cn = c.dial(frontend.ListenerSubmissions)
	cn.cmd("EHLO laptop", "250-")
	cn.cmd("AUTH LOGIN "+b64("long"), "334 ")
	cn.cmd(base64.StdEncoding.EncodeToString([]byte(password)), "235 ")
}
