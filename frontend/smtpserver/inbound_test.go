package smtpserver_test

import (
	"strconv"
	"strings"
	"testing"

	"mailcluster/frontend"
)

// EHLO advertises the extensions issue 4 lists; HELO works.
func TestInboundGreeting(t *testing.T) {
	c := newCluster(t, options{})
	cn := c.dial(frontend.ListenerSMTP)
	ehlo := cn.cmd("EHLO client.remote.test", "250-")
	for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "STARTTLS", "SIZE 52428800"} {
		if !strings.Contains(ehlo, "250-"+ext+"\r\n") && !strings.Contains(ehlo, "250 "+ext+"\r\n") {
			t.Errorf("EHLO does not advertise %s:\n%s", ext, ehlo)
		}
	}
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("port 25 advertises AUTH:\n%s", ehlo)
	}
	cn.starttls(c.tlsConfig())
	ehlo = cn.cmd("EHLO client.remote.test", "250-")
	if strings.Contains(ehlo, "AUTH") || strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("port 25 after TLS:\n%s", ehlo)
	}
	cn.cmd("AUTH PLAIN AHVzZXIAc2VjcmV0", "503 5.5.1 ")
	cn2 := c.dial(frontend.ListenerSMTP)
	cn2.cmd("HELO client.remote.test", "250 ")
	cn2.cmd("QUIT", "221 ")
}

// A message to users on two backends, an alias and a list is stored once
// per account, byte for byte as sent after the Received header, which names
// the TLS version and cipher.
func TestInboundDeliversByteExact(t *testing.T) {
	c := newCluster(t, options{})
	alice := c.user("alice", "b1", "mailLocalAddress: postmaster@"+domain)
	bob := c.user("bob", "b2")
	carol := c.user("carol", "")
	team := c.list("team", "bob", "carol")

	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.starttls(c.tlsConfig())
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test> SIZE=1000 BODY=8BITMIME", "250 ")
	cn.cmd("RCPT TO:<postmaster@"+domain+">", "250 ")
	cn.cmd("RCPT TO:<"+bob+">", "250 ")
	cn.cmd("RCPT TO:<"+team+">", "250 ")
	cn.cmd("RCPT TO:<Alice+tag@EXAMPLE.test>", "250 ")
	msg := message("exact", "Line one\r\n.leading dot\r\n..two dots\r\n\r\nUTF-8: h\xc3\xa9llo\r\n\tTab\r\ntrailing space \r\n")
	if r := cn.data(msg); !strings.HasPrefix(r, "250 2.0.0 Ok: stored as ") {
		t.Fatalf("DATA: %q", r)
	}
	for _, who := range []string{alice, bob, carol} {
		box := c.inbox(who)
		if len(box) != 1 {
			t.Fatalf("%s has %d messages, want 1", who, len(box))
		}
		rcv, rest := stripReceived(t, box[0])
		if string(rest) != msg {
			t.Errorf("%s: stored %q\nwant %q", who, rest, msg)
		}
		for _, want := range []string{"from client.remote.test ([127.0.0.1])", "by mx.example.test", "with ESMTPS", "using TLS 1.3 with cipher TLS_"} {
			if !strings.Contains(rcv, want) {
				t.Errorf("Received header %q lacks %q", rcv, want)
			}
		}
	}
	// Plain SMTP says so in the Received header, and a second message in the
	// same session is another message.
	cn2 := c.dial(frontend.ListenerSMTP)
	cn2.cmd("EHLO client.remote.test", "250-")
	cn2.cmd("MAIL FROM:<>", "250 ")
	cn2.cmd("RCPT TO:<"+alice+">", "250 ")
	if r := cn2.data(message("plain", "body\r\n")); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}
	cn2.mustSend(alice, message("second", "body 2\r\n"))
	box := c.inbox(alice)
	if len(box) != 3 {
		t.Fatalf("alice has %d messages, want 3", len(box))
	}
	rcv, _ := stripReceived(t, box[1])
	if !strings.Contains(rcv, "with ESMTP id") || strings.Contains(rcv, "TLS") {
		t.Errorf("plain Received header: %q", rcv)
	}
}

// BDAT (RFC 3030) delivers the same bytes, in several chunks.
func TestInboundChunking(t *testing.T) {
	c := newCluster(t, options{})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	msg := message("bdat", "first part\r\n.not stuffed\r\n"+strings.Repeat("x", 70)+"\r\n")
	half := len(msg) / 2
	cn.send("BDAT " + itoa(half) + "\r\n" + msg[:half])
	cn.expect("250 ")
	cn.send("BDAT " + itoa(len(msg)-half) + " LAST\r\n" + msg[half:])
	cn.expect("250 2.0.0 Ok: stored as ")
	box := c.inbox(alice)
	if len(box) != 1 {
		t.Fatalf("%d messages", len(box))
	}
	if _, rest := stripReceived(t, box[0]); string(rest) != msg {
		t.Fatalf("stored %q\nwant %q", rest, msg)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// SMTPUTF8 (RFC 6531): a UTF-8 sender and headers are accepted and the
// Received header says UTF8ESMTP; an unknown UTF-8 recipient is 550.
func TestSMTPUTF8(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<jürgen@bücher.test> SMTPUTF8", "250 ")
	cn.cmd("RCPT TO:<ünknown@"+domain+">", "550 5.1.1 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	msg := "From: Jürgen <jürgen@bücher.test>\r\nSubject: Grüße\r\n\r\nHallo\r\n"
	if r := cn.data(msg); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}
	rcv, rest := stripReceived(t, c.inbox(alice)[0])
	if !strings.Contains(rcv, "with UTF8ESMTP id") || string(rest) != msg {
		t.Fatalf("Received %q, rest %q", rcv, rest)
	}
}

// The frontend role serves IMAP and POP3 too (packages frontend/imap and
// frontend/pop3): a message delivered by SMTP is there over both.
func TestIMAPAndPOP3Wired(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.mustSend(alice, message("wired", "x\r\n"))
	im := c.dialTLS(frontend.ListenerIMAPS)
	im.expect("* OK")
	im.send("a1 LOGIN alice secret\r\n")
	im.untilTag("a1 OK")
	im.send("a2 SELECT INBOX\r\n")
	if r := im.untilTag("a2 OK"); !strings.Contains(r, "* 1 EXISTS") {
		t.Fatalf("SELECT: %q", r)
	}
	im.send("a3 LOGOUT\r\n")
	im.untilTag("a3 OK")
	pp := c.dialTLS(frontend.ListenerPOP3S)
	pp.expect("+OK")
	pp.cmd("USER alice", "+OK")
	pp.cmd("PASS secret", "+OK")
	pp.cmd("STAT", "+OK 1 ")
	pp.cmd("QUIT", "+OK")
}
