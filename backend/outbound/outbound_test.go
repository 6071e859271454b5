package outbound_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"mailcluster/backend/outbound"
)

const domain = "example.test"

// want is the part of a Result a test checks; Message is checked for
// containing want.Message.
type want struct {
	Code      int
	Enhanced  string
	Message   string
	RemoteMTA string
	Permanent bool
	Delivered bool
}

func delivered(remote string) want {
	return want{Code: 250, Enhanced: "2.0.0", RemoteMTA: remote, Delivered: true}
}

func checkResults(t *testing.T, got []outbound.Result, rcpts []string, wants ...want) {
	t.Helper()
	if len(got) != len(rcpts) {
		t.Fatalf("got %d results for %d recipients: %+v", len(got), len(rcpts), got)
	}
	for i, r := range got {
		w := wants[min(i, len(wants)-1)]
		if r.Recipient != rcpts[i] || r.Code != w.Code || r.Enhanced != w.Enhanced ||
			r.RemoteMTA != w.RemoteMTA || r.Permanent != w.Permanent || r.Delivered != w.Delivered ||
			!strings.Contains(r.Message, w.Message) {
			t.Errorf("result %d = %+v\nwant %+v for %s", i, r, w, rcpts[i])
		}
		if strings.ContainsFunc(r.Message, func(c rune) bool { return c < ' ' || c > '~' }) || len(r.Message) > 500 {
			t.Errorf("result %d message not one printable line: %q", i, r.Message)
		}
	}
}

func send(t *testing.T, tr *outbound.Transport, rcpts ...string) []outbound.Result {
	t.Helper()
	return tr.Send(t.Context(), domain, outbound.Envelope{From: "a@sender.test", Recipients: rcpts}, body(testMessage))
}

func TestMXPreference(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	backup, primary := e.sink("127.0.0.2", nil), e.sink("127.0.0.3", nil)
	e.zone.add(t,
		"example.test. MX 20 mx2.example.test.",
		"example.test. MX 10 mx1.example.test.",
		"mx1.example.test. A 127.0.0.3",
		"mx2.example.test. A 127.0.0.2",
	)
	tr := e.transport(nil)
	rcpts := []string{"b@example.test", "c@example.test"}
	checkResults(t, send(t, tr, rcpts...), rcpts, delivered("mx1.example.test"))
	msgs := primary.messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].rcpts, rcpts) || msgs[0].from != "a@sender.test" {
		t.Errorf("primary got %+v", msgs)
	}
	if n := backup.connections(); n != 0 {
		t.Errorf("backup MX got %d connections", n)
	}
}

func TestFallback(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		e := newEnv(t)
		backup := e.sink("127.0.0.2", nil)
		e.zone.add(t,
			"example.test. MX 10 mx1.example.test.",
			"example.test. MX 20 mx2.example.test.",
			"mx1.example.test. A "+refusedIP,
			"mx2.example.test. A 127.0.0.2",
		)
		rcpts := []string{"b@example.test"}
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts, delivered("mx2.example.test"))
		if len(backup.messages()) != 1 {
			t.Error("backup MX did not get the message")
		}
	})
	t.Run("421 greeting", func(t *testing.T) {
		e := newEnv(t, "127.0.0.2", "127.0.0.3")
		backup := e.sink("127.0.0.2", nil)
		busy := e.raw("127.0.0.3", greet421)
		e.zone.add(t,
			"example.test. MX 10 mx1.example.test.",
			"example.test. MX 20 mx2.example.test.",
			"mx1.example.test. A 127.0.0.3",
			"mx2.example.test. A 127.0.0.2",
		)
		rcpts := []string{"b@example.test"}
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts, delivered("mx2.example.test"))
		if busy() != 1 || len(backup.messages()) != 1 {
			t.Errorf("busy MX got %d connections, backup %d messages", busy(), len(backup.messages()))
		}
	})
	t.Run("MX host without address", func(t *testing.T) {
		e := newEnv(t)
		e.sink("127.0.0.2", nil)
		e.zone.add(t,
			"example.test. MX 10 ghost.example.test.",
			"example.test. MX 20 mx2.example.test.",
			"mx2.example.test. A 127.0.0.2",
		)
		rcpts := []string{"b@example.test"}
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts, delivered("mx2.example.test"))
	})
	t.Run("4xx to MAIL", func(t *testing.T) {
		e := newEnv(t, "127.0.0.2", "127.0.0.3")
		backup := e.sink("127.0.0.2", nil)
		e.sink("127.0.0.3", func(k *sink) {
			k.mailReply = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}
		})
		e.zone.add(t,
			"example.test. MX 10 mx1.example.test.",
			"example.test. MX 20 mx2.example.test.",
			"mx1.example.test. A 127.0.0.3",
			"mx2.example.test. A 127.0.0.2",
		)
		rcpts := []string{"b@example.test"}
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts, delivered("mx2.example.test"))
		if len(backup.messages()) != 1 {
			t.Error("backup MX did not get the message")
		}
	})
	t.Run("connection lost at RCPT", func(t *testing.T) {
		e := newEnv(t, "127.0.0.2", "127.0.0.3")
		backup := e.sink("127.0.0.2", nil)
		e.sink("127.0.0.3", func(k *sink) { k.closeAtRcpt = true })
		e.zone.add(t,
			"example.test. MX 10 mx1.example.test.",
			"example.test. MX 20 mx2.example.test.",
			"mx1.example.test. A 127.0.0.3",
			"mx2.example.test. A 127.0.0.2",
		)
		rcpts := []string{"b@example.test", "c@example.test"}
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts, delivered("mx2.example.test"))
		if msgs := backup.messages(); len(msgs) != 1 || !slices.Equal(msgs[0].rcpts, rcpts) {
			t.Errorf("backup got %+v", msgs)
		}
	})
}

func TestAddressLiteral(t *testing.T) {
	e := newEnv(t)
	k := e.sink("127.0.0.2", nil)
	rcpts := []string{"b@[127.0.0.2]"}
	res := e.transport(nil).Send(t.Context(), "[127.0.0.2]",
		outbound.Envelope{From: "a@sender.test", Recipients: rcpts}, body(testMessage))
	checkResults(t, res, rcpts, delivered("[127.0.0.2]"))
	if msgs := k.messages(); len(msgs) != 1 || !slices.Equal(msgs[0].rcpts, rcpts) {
		t.Errorf("sink got %+v", msgs)
	}
}

func TestNoHostAnswers(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		e := newEnv(t)
		e.zone.add(t, "example.test. MX 10 mx1.example.test.", "mx1.example.test. A "+refusedIP)
		rcpts := []string{"b@example.test", "c@example.test"}
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
			want{Code: 0, Enhanced: "4.4.1", Message: "connect to mx1.example.test[" + refusedIP})
	})
	t.Run("421 and refused", func(t *testing.T) {
		// The server's reply is reported, not the later refusal.
		e := newEnv(t, "127.0.0.2")
		e.raw("127.0.0.2", greet421)
		e.zone.add(t,
			"example.test. MX 10 mx1.example.test.",
			"example.test. MX 20 mx2.example.test.",
			"mx1.example.test. A 127.0.0.2",
			"mx2.example.test. A "+refusedIP,
		)
		rcpts := []string{"b@example.test"}
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
			want{Code: 421, Enhanced: "4.3.2", Message: "too busy, try later", RemoteMTA: "mx1.example.test"})
	})
	t.Run("silent server", func(t *testing.T) {
		e := newEnv(t, "127.0.0.2")
		e.raw("127.0.0.2", silent)
		e.zone.add(t, "example.test. MX 10 mx1.example.test.", "mx1.example.test. A 127.0.0.2")
		tr := e.transport(func(c *outbound.Config) { c.CommandTimeout = 300 * time.Millisecond })
		start := time.Now()
		rcpts := []string{"b@example.test"}
		checkResults(t, send(t, tr, rcpts...), rcpts, want{Enhanced: "4.4.1", Message: "no greeting"})
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Send took %v", d)
		}
	})
}

func TestDNS(t *testing.T) {
	rcpts := []string{"b@example.test", "c@example.test"}
	t.Run("implicit MX", func(t *testing.T) {
		e := newEnv(t)
		k := e.sink("127.0.0.2", nil)
		e.zone.add(t, "example.test. A 127.0.0.2", "example.test. TXT \"v=spf1 -all\"")
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts, delivered("example.test"))
		if len(k.messages()) != 1 {
			t.Error("no message")
		}
	})
	t.Run("null MX", func(t *testing.T) {
		e := newEnv(t)
		e.zone.add(t, "example.test. MX 0 .", "example.test. A 127.0.0.2")
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
			want{Enhanced: "5.1.10", Message: "does not accept mail (null MX)", Permanent: true})
	})
	t.Run("NXDOMAIN", func(t *testing.T) {
		e := newEnv(t)
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
			want{Enhanced: "5.1.2", Message: "domain example.test not found", Permanent: true})
	})
	t.Run("NODATA everywhere", func(t *testing.T) {
		e := newEnv(t)
		e.zone.add(t, "example.test. TXT \"hello\"")
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
			want{Enhanced: "5.1.2", Message: "domain example.test not found", Permanent: true})
	})
	t.Run("SERVFAIL", func(t *testing.T) {
		e := newEnv(t)
		e.zone.fail("example.test", dns.RcodeServerFailure)
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
			want{Enhanced: "4.4.3", Message: "DNS MX lookup for example.test failed"})
	})
	t.Run("SERVFAIL for the MX host", func(t *testing.T) {
		e := newEnv(t)
		e.zone.add(t, "example.test. MX 10 mx1.example.test.")
		e.zone.fail("mx1.example.test", dns.RcodeServerFailure)
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
			want{Enhanced: "4.4.3", Message: "DNS A/AAAA lookup for mx1.example.test failed"})
	})
	t.Run("no MX host has an address", func(t *testing.T) {
		e := newEnv(t)
		e.zone.add(t, "example.test. MX 10 ghost.example.test.")
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
			want{Enhanced: "5.4.4", Message: "MX host ghost.example.test has no A or AAAA records", Permanent: true})
	})
	t.Run("DNS server down", func(t *testing.T) {
		e := newEnv(t)
		tr := e.transport(func(c *outbound.Config) {
			c.Resolver = refusedIP + ":53"
			c.DNSTimeout = 500 * time.Millisecond
		})
		checkResults(t, send(t, tr, rcpts...), rcpts, want{Enhanced: "4.4.3", Message: "DNS MX lookup"})
	})
}

func TestRecipientReplies(t *testing.T) {
	e := newEnv(t)
	k := e.sink("127.0.0.2", func(k *sink) {
		k.rcptReply["busy@example.test"] = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"}
		k.rcptReply["gone@example.test"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user\nreally"}
		k.rcptReply["plain@example.test"] = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.NoEnhancedCode, Message: "not here"}
	})
	e.zone.add(t, "example.test. MX 10 mx1.example.test.", "mx1.example.test. A 127.0.0.2")
	rcpts := []string{"ok1@example.test", "busy@example.test", "gone@example.test", "plain@example.test", "ok2@example.test"}
	checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
		delivered("mx1.example.test"),
		want{Code: 450, Enhanced: "4.2.1", Message: "mailbox busy", RemoteMTA: "mx1.example.test"},
		want{Code: 550, Enhanced: "5.1.1", Message: "no such user really", RemoteMTA: "mx1.example.test", Permanent: true},
		want{Code: 553, Enhanced: "5.0.0", Message: "not here", RemoteMTA: "mx1.example.test", Permanent: true},
		delivered("mx1.example.test"),
	)
	msgs := k.messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].rcpts, []string{"ok1@example.test", "ok2@example.test"}) {
		t.Errorf("sink got %+v", msgs)
	}
	if n := k.connections(); n != 1 {
		t.Errorf("%d connections", n)
	}

	// None accepted: no DATA, and the connection stays usable.
	rcpts = []string{"gone@example.test"}
	checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
		want{Code: 550, Enhanced: "5.1.1", RemoteMTA: "mx1.example.test", Permanent: true})
	if len(k.messages()) != 1 {
		t.Error("message sent without recipients")
	}
}

func TestMailReplies(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	backup := e.sink("127.0.0.2", nil)
	e.sink("127.0.0.3", func(k *sink) {
		k.mailReply = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender blocked"}
	})
	e.zone.add(t,
		"example.test. MX 10 mx1.example.test.",
		"example.test. MX 20 mx2.example.test.",
		"mx1.example.test. A 127.0.0.3",
		"mx2.example.test. A 127.0.0.2",
	)
	rcpts := []string{"b@example.test", "c@example.test"}
	checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
		want{Code: 550, Enhanced: "5.7.1", Message: "sender blocked", RemoteMTA: "mx1.example.test", Permanent: true})
	if n := backup.connections(); n != 0 {
		t.Errorf("backup got %d connections after a 5xx to MAIL", n)
	}
}

func TestDataReplies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply *smtp.SMTPError
		want  want
	}{
		{"permanent", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content rejected"},
			want{Code: 554, Enhanced: "5.6.0", Message: "content rejected", RemoteMTA: "mx1.example.test", Permanent: true}},
		{"temporary", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"},
			want{Code: 451, Enhanced: "4.3.0", Message: "try later", RemoteMTA: "mx1.example.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "127.0.0.2", "127.0.0.3")
			backup := e.sink("127.0.0.2", nil)
			e.sink("127.0.0.3", func(k *sink) {
				k.rcptReply["gone@example.test"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
				k.dataReply = tc.reply
			})
			e.zone.add(t,
				"example.test. MX 10 mx1.example.test.",
				"example.test. MX 20 mx2.example.test.",
				"mx1.example.test. A 127.0.0.3",
				"mx2.example.test. A 127.0.0.2",
			)
			rcpts := []string{"b@example.test", "gone@example.test", "c@example.test"}
			checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
				tc.want,
				want{Code: 550, Enhanced: "5.1.1", Message: "no such user", RemoteMTA: "mx1.example.test", Permanent: true},
				tc.want)
			if n := backup.connections(); n != 0 {
				t.Errorf("backup got %d connections", n)
			}
		})
	}
}

func TestBodyBytes(t *testing.T) {
	e := newEnv(t)
	k := e.sink("127.0.0.2", nil)
	e.zone.add(t, "example.test. MX 10 mx1.example.test.", "mx1.example.test. A 127.0.0.2")
	msg := "Subject: dots\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n" +
		".leading dot\r\n..two dots\r\n.\r\n. \r\n\xe9t\xe9 \xff\x80 8-bit\r\n" +
		strings.Repeat("long line ", 90) + "\r\nlast\r\n"
	opened := 0
	res := e.transport(nil).Send(t.Context(), domain,
		outbound.Envelope{From: "", Recipients: []string{"b@example.test"}, Size: int64(len(msg))},
		func() (io.ReadCloser, error) { opened++; return io.NopCloser(strings.NewReader(msg)), nil })
	checkResults(t, res, []string{"b@example.test"}, delivered("mx1.example.test"))
	msgs := k.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	if got := string(msgs[0].data); got != msg {
		t.Errorf("body differs:\ngot  %q\nwant %q", got, msg)
	}
	if msgs[0].from != "" || msgs[0].opts.Size != int64(len(msg)) || msgs[0].opts.Body != smtp.Body8BitMIME {
		t.Errorf("MAIL FROM %q with %+v", msgs[0].from, msgs[0].opts)
	}
	if opened != 1 {
		t.Errorf("body opened %d times", opened)
	}
}

func TestBodyErrors(t *testing.T) {
	e := newEnv(t)
	k := e.sink("127.0.0.2", nil)
	e.zone.add(t, "example.test. MX 10 mx1.example.test.", "mx1.example.test. A 127.0.0.2")
	tr := e.transport(nil)
	rcpts := []string{"b@example.test"}
	env := outbound.Envelope{From: "a@sender.test", Recipients: rcpts}
	res := tr.Send(t.Context(), domain, env, func() (io.ReadCloser, error) { return nil, errors.New("blob store down") })
	checkResults(t, res, rcpts, want{Enhanced: "4.3.0", Message: "local error"})
	res = tr.Send(t.Context(), domain, env, func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\r\n\r\npartial"), failingReader{})), nil
	})
	checkResults(t, res, rcpts, want{Enhanced: "4.3.0", Message: "local error"})
	if msgs := k.messages(); len(msgs) != 0 {
		t.Errorf("sink accepted %q", msgs[0].data)
	}
	// The transport still works.
	checkResults(t, send(t, tr, rcpts...), rcpts, delivered("mx1.example.test"))
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk error") }

func TestSTARTTLS(t *testing.T) {
	t.Run("used when offered", func(t *testing.T) {
		e := newEnv(t)
		cfg, _ := serverTLS(t, "mx1.example.test")
		k := e.sink("127.0.0.2", func(k *sink) { k.srv.TLSConfig = cfg })
		e.zone.add(t, "example.test. MX 10 mx1.example.test.", "mx1.example.test. A 127.0.0.2")
		rcpts := []string{"b@example.test"}
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts, delivered("mx1.example.test"))
		if msgs := k.messages(); len(msgs) != 1 || !msgs[0].tls {
			t.Errorf("message not received over TLS: %+v", msgs)
		}
	})
	t.Run("plaintext after a failed handshake", func(t *testing.T) {
		e := newEnv(t)
		k := e.sink("127.0.0.2", func(k *sink) {
			k.srv.TLSConfig = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return nil, errors.New("no certificate today")
			}}
		})
		e.zone.add(t, "example.test. MX 10 mx1.example.test.", "mx1.example.test. A 127.0.0.2")
		rcpts := []string{"b@example.test"}
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts, delivered("mx1.example.test"))
		if msgs := k.messages(); len(msgs) != 1 || msgs[0].tls {
			t.Errorf("got %+v", msgs)
		}
		if n := k.connections(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})
}

// A host that refuses EHLO once inside TLS is given up like one that
// refuses the greeting: the next MX host gets the mail, nobody is bounced.
func TestEHLORefusedAfterSTARTTLS(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	backup := e.sink("127.0.0.2", nil)
	cfg, _ := serverTLS(t, "mx1.example.test")
	refusing := e.raw("127.0.0.3", func(c net.Conn) {
		r := bufio.NewReader(c)
		io.WriteString(c, "220 mx1.example.test ESMTP\r\n")
		r.ReadString('\n') // EHLO
		io.WriteString(c, "250-mx1.example.test\r\n250 STARTTLS\r\n")
		r.ReadString('\n') // STARTTLS
		io.WriteString(c, "220 2.0.0 go ahead\r\n")
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			return
		}
		tr := bufio.NewReader(tc)
		tr.ReadString('\n') // EHLO
		io.WriteString(tc, "554 5.7.1 not you\r\n")
		tr.ReadString('\n')
	})
	e.zone.add(t,
		"example.test. MX 10 mx1.example.test.",
		"example.test. MX 20 mx2.example.test.",
		"mx1.example.test. A 127.0.0.3",
		"mx2.example.test. A 127.0.0.2",
	)
	rcpts := []string{"b@example.test", "c@example.test"}
	checkResults(t, send(t, e.transport(nil), rcpts...), rcpts, delivered("mx2.example.test"))
	if refusing() != 1 || len(backup.messages()) != 1 {
		t.Errorf("refusing MX got %d connections, backup %d messages", refusing(), len(backup.messages()))
	}
}

func TestScriptedServers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replies map[string]string
		want    []string // commands the server must have seen, in order
	}{
		{"HELO fallback", map[string]string{"EHLO": "502 5.5.1 what?"},
			[]string{"EHLO client.test", "HELO client.test", "MAIL FROM:<a@sender.test>", "RCPT TO:<b@example.test>", "DATA"}},
		{"STARTTLS refused", map[string]string{"STARTTLS": "454 4.7.0 TLS not available"},
			[]string{"EHLO client.test", "STARTTLS", "MAIL FROM:<a@sender.test>", "RCPT TO:<b@example.test>", "DATA"}},
		{"text injected after STARTTLS", map[string]string{"STARTTLS": "220 go ahead\r\n250 injected"},
			[]string{"EHLO client.test", "STARTTLS", "EHLO client.test", "MAIL FROM:<a@sender.test>", "RCPT TO:<b@example.test>", "DATA"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var mu sync.Mutex
			var log []string
			e.raw("127.0.0.2", scripted(tc.replies, &mu, &log))
			e.zone.add(t, "example.test. MX 10 mx1.example.test.", "mx1.example.test. A 127.0.0.2")
			rcpts := []string{"b@example.test"}
			res := send(t, e.transport(nil), rcpts...)
			checkResults(t, res, rcpts, want{Code: 250, Enhanced: "2.0.0", Message: "queued as scripted", RemoteMTA: "mx1.example.test", Delivered: true})
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(log[:min(len(log), len(tc.want))], tc.want) {
				t.Errorf("server saw %q\nwant %q", log, tc.want)
			}
		})
	}
}

func TestEqualPreference(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	a, b := e.sink("127.0.0.2", nil), e.sink("127.0.0.3", nil)
	e.zone.add(t,
		"example.test. MX 10 mx1.example.test.",
		"example.test. MX 10 mx2.example.test.",
		"example.test. MX 20 mx3.example.test.",
		"mx1.example.test. A 127.0.0.2",
		"mx2.example.test. A 127.0.0.3",
		"mx3.example.test. A "+refusedIP,
	)
	tr := e.transport(func(c *outbound.Config) { c.MaxReuse = 1 })
	for range 20 {
		rcpts := []string{"b@example.test"}
		if r := send(t, tr, rcpts...); !r[0].Delivered {
			t.Fatalf("not delivered: %+v", r[0])
		}
	}
	if na, nb := len(a.messages()), len(b.messages()); na == 0 || nb == 0 {
		t.Errorf("equal-preference hosts got %d and %d messages: not shuffled", na, nb)
	}
}

func TestRelay(t *testing.T) {
	// The destination domain does not exist: the relay takes everything.
	rcpts := []string{"b@example.test", "c@example.test"}
	setup := func(t *testing.T, mod func(*sink)) (*testEnv, *sink, *x509.CertPool) {
		e := newEnv(t)
		cfg, pool := serverTLS(t, "relay.test")
		k := e.sink("127.0.0.2", func(k *sink) {
			k.srv.TLSConfig = cfg
			k.users = map[string]string{"user": "secret"}
			if mod != nil {
				mod(k)
			}
		})
		return e, k, pool
	}
	relay := func(e *testEnv, pool *x509.CertPool, mod func(*outbound.Config)) *outbound.Transport {
		return e.transport(func(c *outbound.Config) {
			c.Relay = net.JoinHostPort("127.0.0.2", strconv.Itoa(e.port))
			c.RelayUsername, c.RelayPassword = "user", "secret"
			c.RelayTLS = &tls.Config{ServerName: "relay.test", RootCAs: pool}
			if mod != nil {
				mod(c)
			}
		})
	}
	t.Run("STARTTLS and AUTH PLAIN", func(t *testing.T) {
		e, k, pool := setup(t, nil)
		checkResults(t, send(t, relay(e, pool, nil), rcpts...), rcpts, delivered("127.0.0.2"))
		if msgs := k.messages(); len(msgs) != 1 || !msgs[0].tls || msgs[0].user != "user" {
			t.Errorf("relay got %+v", msgs)
		}
	})
	t.Run("implicit TLS", func(t *testing.T) {
		e := newEnv(t)
		cfg, pool := serverTLS(t, "relay.test")
		k := e.sink("127.0.0.2", func(k *sink) {
			k.implicitTLS = cfg
			k.users = map[string]string{"user": "secret"}
		})
		tr := relay(e, pool, func(c *outbound.Config) { c.RelayImplicitTLS = true })
		checkResults(t, send(t, tr, rcpts...), rcpts, delivered("127.0.0.2"))
		if msgs := k.messages(); len(msgs) != 1 || !msgs[0].tls || msgs[0].user != "user" {
			t.Errorf("relay got %+v", msgs)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		e, k, pool := setup(t, nil)
		tr := relay(e, pool, func(c *outbound.Config) { c.RelayPassword = "wrong" })
		checkResults(t, send(t, tr, rcpts...), rcpts,
			want{Code: 535, Enhanced: "4.7.8", Message: "bad credentials", RemoteMTA: "127.0.0.2", Permanent: false})
		if len(k.messages()) != 0 {
			t.Error("relay accepted mail")
		}
	})
	t.Run("temporary AUTH failure", func(t *testing.T) {
		e, _, pool := setup(t, func(k *sink) {
			k.authReply = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "directory unavailable"}
		})
		checkResults(t, send(t, relay(e, pool, nil), rcpts...), rcpts,
			want{Code: 454, Enhanced: "4.7.0", Message: "directory unavailable", RemoteMTA: "127.0.0.2"})
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		e, k, _ := setup(t, nil)
		checkResults(t, send(t, relay(e, x509.NewCertPool(), nil), rcpts...), rcpts,
			want{Enhanced: "4.7.5", Message: "TLS with 127.0.0.2", RemoteMTA: "127.0.0.2"})
		if n := k.connections(); n != 1 {
			t.Errorf("%d connections: plaintext retry to the relay?", n)
		}
	})
	t.Run("no STARTTLS", func(t *testing.T) {
		e, _, pool := setup(t, func(k *sink) { k.srv.TLSConfig = nil; k.srv.AllowInsecureAuth = true })
		checkResults(t, send(t, relay(e, pool, nil), rcpts...), rcpts,
			want{Enhanced: "4.7.10", Message: "does not offer STARTTLS", RemoteMTA: "127.0.0.2"})
	})
}

func TestReuse(t *testing.T) {
	setup := func(t *testing.T, mod func(*sink)) (*testEnv, *sink) {
		e := newEnv(t)
		k := e.sink("127.0.0.2", mod)
		e.zone.add(t, "example.test. MX 10 mx1.example.test.", "mx1.example.test. A 127.0.0.2")
		return e, k
	}
	rcpts := []string{"b@example.test"}
	t.Run("two Sends, one connection", func(t *testing.T) {
		e, k := setup(t, nil)
		tr := e.transport(nil)
		for range 3 {
			checkResults(t, send(t, tr, rcpts...), rcpts, delivered("mx1.example.test"))
		}
		if n, m := k.connections(), len(k.messages()); n != 1 || m != 3 {
			t.Errorf("%d connections for %d messages", n, m)
		}
		tr.Close()
		waitFor(t, "connection closed by Close", func() bool {
			k.mu.Lock()
			defer k.mu.Unlock()
			return k.open == 0
		})
		checkResults(t, send(t, tr, rcpts...), rcpts, want{Enhanced: "4.3.0", Message: "closed"})
	})
	t.Run("MaxReuse", func(t *testing.T) {
		e, k := setup(t, nil)
		tr := e.transport(func(c *outbound.Config) { c.MaxReuse = 2 })
		for range 3 {
			checkResults(t, send(t, tr, rcpts...), rcpts, delivered("mx1.example.test"))
		}
		if n := k.connections(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})
	t.Run("IdleTimeout", func(t *testing.T) {
		e, k := setup(t, nil)
		tr := e.transport(func(c *outbound.Config) { c.IdleTimeout = 100 * time.Millisecond })
		checkResults(t, send(t, tr, rcpts...), rcpts, delivered("mx1.example.test"))
		waitFor(t, "idle connection closed", func() bool {
			k.mu.Lock()
			defer k.mu.Unlock()
			return k.open == 0
		})
		checkResults(t, send(t, tr, rcpts...), rcpts, delivered("mx1.example.test"))
		if n := k.connections(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})
	t.Run("server closed the idle connection", func(t *testing.T) {
		e, k := setup(t, func(k *sink) { k.srv.ReadTimeout = 200 * time.Millisecond })
		tr := e.transport(nil)
		checkResults(t, send(t, tr, rcpts...), rcpts, delivered("mx1.example.test"))
		waitFor(t, "server timeout", func() bool {
			k.mu.Lock()
			defer k.mu.Unlock()
			return k.open == 0
		})
		checkResults(t, send(t, tr, rcpts...), rcpts, delivered("mx1.example.test"))
		if n := k.connections(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDomainConcurrency(t *testing.T) {
	e := newEnv(t)
	k := e.sink("127.0.0.2", func(k *sink) { k.dataDelay = 100 * time.Millisecond })
	e.zone.add(t, "example.test. MX 10 mx1.example.test.", "mx1.example.test. A 127.0.0.2")
	tr := e.transport(func(c *outbound.Config) { c.DomainConcurrency = 2 })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			rcpt := "r" + strconv.Itoa(i) + "@example.test"
			checkResults(t, send(t, tr, rcpt), []string{rcpt}, delivered("mx1.example.test"))
		})
	}
	wg.Wait()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.maxOpen > 2 || k.maxData > 2 || len(k.msgs) != 8 {
		t.Errorf("at most %d connections open, %d in DATA at once, %d messages", k.maxOpen, k.maxData, len(k.msgs))
	}
	if k.accepted > 2 {
		t.Errorf("%d connections for 8 messages to one host", k.accepted)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	k := e.sink("127.0.0.2", func(k *sink) { k.hold = make(chan struct{}) })
	backup := e.sink("127.0.0.3", nil)
	e.zone.add(t,
		"example.test. MX 10 mx1.example.test.",
		"example.test. MX 20 mx2.example.test.",
		"mx1.example.test. A 127.0.0.2",
		"mx2.example.test. A 127.0.0.3",
	)
	tr := e.transport(func(c *outbound.Config) { c.DomainConcurrency = 1 })
	rcpts := []string{"b@example.test"}
	env := outbound.Envelope{From: "a@sender.test", Recipients: rcpts}

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	first := make(chan []outbound.Result)
	go func() {
		c, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		first <- tr.Send(c, domain, env, body(testMessage))
	}()
	waitFor(t, "first message in DATA", func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.inData == 1
	})
	// The only slot is taken: this Send waits, then gives up.
	start := time.Now()
	checkResults(t, tr.Send(ctx, domain, env, body(testMessage)), rcpts,
		want{Enhanced: "4.3.0", Message: "context deadline exceeded"})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("canceled Send took %v", d)
	}
	// The first is aborted in DATA; the message may have arrived, so it
	// is not sent to the backup.
	checkResults(t, <-first, rcpts, want{Enhanced: "4.3.0", Message: "aborted"})
	if n := backup.connections(); n != 0 {
		t.Errorf("backup got %d connections", n)
	}
	if n := k.connections(); n != 1 {
		t.Errorf("%d connections to the primary", n)
	}
}

func TestDataTimeoutNoDoubleSend(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	e.sink("127.0.0.2", func(k *sink) { k.hold = make(chan struct{}) }) // never answers the final dot
	backup := e.sink("127.0.0.3", nil)
	e.zone.add(t,
		"example.test. MX 10 mx1.example.test.",
		"example.test. MX 20 mx2.example.test.",
		"mx1.example.test. A 127.0.0.2",
		"mx2.example.test. A 127.0.0.3",
	)
	tr := e.transport(func(c *outbound.Config) { c.DataTimeout = 300 * time.Millisecond })
	rcpts := []string{"b@example.test", "c@example.test"}
	start := time.Now()
	checkResults(t, send(t, tr, rcpts...), rcpts,
		want{Enhanced: "4.4.2", Message: "may have been delivered", RemoteMTA: "mx1.example.test"})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Send took %v", d)
	}
	if n := backup.connections(); n != 0 {
		t.Errorf("backup got %d connections", n)
	}
}

func TestSMTPUTF8(t *testing.T) {
	rcpts := []string{"ok@example.test", "δοκιμή@example.test"}
	t.Run("not offered", func(t *testing.T) {
		e := newEnv(t)
		k := e.sink("127.0.0.2", nil)
		e.zone.add(t, "example.test. MX 10 mx1.example.test.", "mx1.example.test. A 127.0.0.2")
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts,
			delivered("mx1.example.test"),
			want{Enhanced: "5.6.7", Message: "SMTPUTF8", RemoteMTA: "mx1.example.test", Permanent: true})
		if msgs := k.messages(); len(msgs) != 1 || !slices.Equal(msgs[0].rcpts, rcpts[:1]) || msgs[0].opts.UTF8 {
			t.Errorf("sink got %+v", msgs)
		}
	})
	t.Run("offered", func(t *testing.T) {
		e := newEnv(t)
		k := e.sink("127.0.0.2", func(k *sink) { k.srv.EnableSMTPUTF8 = true })
		e.zone.add(t, "example.test. MX 10 mx1.example.test.", "mx1.example.test. A 127.0.0.2")
		checkResults(t, send(t, e.transport(nil), rcpts...), rcpts, delivered("mx1.example.test"))
		if msgs := k.messages(); len(msgs) != 1 || !slices.Equal(msgs[0].rcpts, rcpts) || !msgs[0].opts.UTF8 {
			t.Errorf("sink got %+v", msgs)
		}
	})
	t.Run("U-label domain", func(t *testing.T) {
		e := newEnv(t)
		k := e.sink("127.0.0.2", nil)
		e.zone.add(t, "xn--bcher-kva.test. MX 10 mx1.example.test.", "mx1.example.test. A 127.0.0.2")
		rcpts := []string{"user@bücher.test"}
		res := e.transport(nil).Send(t.Context(), "bücher.test",
			outbound.Envelope{From: "a@sender.test", Recipients: rcpts}, body(testMessage))
		checkResults(t, res, rcpts, delivered("mx1.example.test"))
		if msgs := k.messages(); len(msgs) != 1 || !slices.Equal(msgs[0].rcpts, []string{"user@xn--bcher-kva.test"}) || msgs[0].opts.UTF8 {
			t.Errorf("sink got %+v", msgs)
		}
	})
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	tr := e.transport(nil)
	rcpts := []string{"b@example.test"}
	checkResults(t, tr.Send(t.Context(), "bad domain!", outbound.Envelope{Recipients: rcpts}, body(testMessage)), rcpts,
		want{Enhanced: "5.1.2", Message: "bad destination domain", Permanent: true})
	checkResults(t, tr.Send(t.Context(), domain, outbound.Envelope{From: "a\r\n@x", Recipients: rcpts}, body(testMessage)), rcpts,
		want{Enhanced: "5.1.7", Message: "bad sender", Permanent: true})
	bad := []string{"b\r\nRSET@example.test", "<x>@example.test", ""}
	checkResults(t, tr.Send(t.Context(), domain, outbound.Envelope{Recipients: bad}, body(testMessage)), bad,
		want{Enhanced: "5.1.3", Message: "bad recipient", Permanent: true})
	if res := tr.Send(t.Context(), domain, outbound.Envelope{}, body(testMessage)); len(res) != 0 {
		t.Errorf("results without recipients: %+v", res)
	}

	for _, cfg := range []outbound.Config{
		{},
		{HeloName: "has space"},
		{HeloName: "ok.test", Relay: "nohost"},
		{HeloName: "ok.test", RelayUsername: "u"},
		{HeloName: "ok.test", Relay: "r.test:587", RelayTLS: &tls.Config{InsecureSkipVerify: true}},
		{HeloName: "ok.test", CommandTimeout: -time.Second},
		{HeloName: "ok.test", Port: 70000},
	} {
		if _, err := outbound.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
