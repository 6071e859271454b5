package smtpserver_test

import (
	"strings"
	"testing"
	"time"

	"mailcluster/frontend"
)

// authenticated opens a submission session (implicit TLS) logged in as
// alice.
func (c *cluster) authenticated() *conn {
	c.t.Helper()
	cn := c.dial(frontend.ListenerSubmissions)
	cn.cmd("EHLO laptop", "250-")
	cn.cmd("AUTH PLAIN "+plain("alice", "secret"), "235 ")
	return cn
}

// VRFY and EXPN off (the default): 252 and 502 to everyone, authenticated
// or not.
func TestVRFYAndEXPNOffByDefault(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	team := c.list("team", "alice")
	cn := c.authenticated()
	cn.cmd("VRFY "+alice, "252 2.5.0 ")
	cn.cmd("EXPN "+team, "502 5.5.1 ")
	cn = c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("VRFY "+alice, "252 ")
	cn.cmd("EXPN "+team, "502 ")
}

// With -smtp-vrfy and -smtp-expn: answered on submission to authenticated
// users only; never on port 25; each command counts against
// smtp-max-vrfy and each refusal against smtp-max-bad-recipients.
func TestVRFYAndEXPN(t *testing.T) {
	c := newCluster(t, options{backends: 2, ldapRly: true, mod: func(cfg *frontend.Config) {
		cfg.SMTP.Vrfy, cfg.SMTP.Expn = true, true
		cfg.SMTP.MaxVrfy = 12
		cfg.SMTP.MaxBadRecipients = 8
		cfg.Directory.DownFor = 100 * time.Millisecond
		cfg.Directory.ListMaxMembers = 3
	}})
	alice := c.user("alice", "b1", "mailLocalAddress: a.smith@"+domain)
	bob := c.user("bob", "b2")
	c.user("dis", "b1", "mailclusterEnabled: FALSE")
	away := c.user("away", "", "mailRoutingAddress: someone@elsewhere.test")
	team := c.list("team", "alice", "bob")
	c.user("erin", "b2")
	c.user("dave", "b1")
	big := c.list("big", "alice", "bob", "erin", "dave")

	// Port 25: nothing, whatever the settings (address harvesting).
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("VRFY "+alice, "252 2.5.0 ")
	cn.cmd("EXPN "+team, "502 5.5.1 ")
	cn.cmd("VRFY nobody@"+domain, "252 2.5.0 ")

	// Submission before AUTH: authentication required.
	cn = c.dial(frontend.ListenerSubmissions)
	cn.cmd("EHLO laptop", "250-")
	cn.cmd("VRFY "+alice, "530 5.7.0 ")
	cn.cmd("EXPN "+team, "530 5.7.0 ")

	// VRFY (ten commands, four refused).
	cn = c.authenticated()
	cn.cmd("VRFY <"+alice+">", "250 2.1.5 <"+alice+">")
	cn.cmd("VRFY a.smith@"+domain, "250 2.1.5 <a.smith@"+domain+">")
	cn.cmd("VRFY alice+tag@"+domain, "250 2.1.5 <alice+tag@"+domain+">")
	cn.cmd("VRFY "+team+" SMTPUTF8", "250 2.1.5 <"+team+">")
	cn.cmd("VRFY "+away, "250 2.1.5 <"+away+">")
	cn.cmd("VRFY someone@elsewhere.test", "252 2.5.0 ")
	cn.cmd("VRFY nobody@"+domain, "550 5.1.1 ")
	cn.cmd("VRFY dis@"+domain, "550 5.2.1 ")
	cn.cmd("VRFY alice", "501 5.5.4 ")
	cn.cmd("VRFY", "501 5.5.4 ")
	// The session goes on: mail can be sent.
	cn.cmd("MAIL FROM:<"+alice+">", "250 ")
	cn.cmd("RCPT TO:<"+bob+">", "250 ")
	if r := cn.data(message("after vrfy", "x\r\n")); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}

	// EXPN: what RCPT would expand the address to, one address a line,
	// each with its enhanced code.
	cn = c.authenticated()
	r := cn.cmd("EXPN "+team, "250-2.1.5 <")
	lines := strings.Split(strings.TrimSuffix(r, "\r\n"), "\r\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "250 2.1.5 <") ||
		!strings.Contains(r, "<"+alice+">") || !strings.Contains(r, "<"+bob+">") {
		t.Fatalf("EXPN %s: %q", team, r)
	}
	cn.cmd("EXPN <a.smith@"+domain+">", "250 2.1.5 <"+alice+">\r\n")
	cn.cmd("EXPN "+away, "250 2.1.5 <someone@elsewhere.test>\r\n")
	cn.cmd("EXPN "+bob, "250 2.1.5 <"+bob+">\r\n")
	cn.cmd("EXPN someone@elsewhere.test", "252 2.5.0 ")
	cn.cmd("EXPN nobody@"+domain, "550 5.1.1 ")
	cn.cmd("EXPN dis@"+domain, "550 5.2.1 ")
	cn.cmd("EXPN not an address", "501 5.5.4 ")
	// Over list-max-members: refused for good, as RCPT refuses it (not
	// 451: the directory is fine).
	cn.cmd("EXPN "+big, "550 5.2.4 ")
	cn.cmd("NOOP", "250 ")

	// Harvesting: refusals count as bad recipients (8)...
	cn = c.authenticated()
	for i := 0; i < 8; i++ {
		cn.cmd("VRFY guess"+itoa(i)+"@"+domain, "550 5.1.1 ")
	}
	cn.cmd("VRFY "+alice, "421 4.7.0 ")
	if !cn.closed() {
		t.Fatal("connection open after 8 refused VRFY")
	}
	// ... and every VRFY or EXPN against smtp-max-vrfy (12).
	cn = c.authenticated()
	for i := 0; i < 12; i++ {
		cn.cmd("VRFY "+alice, "250 ")
	}
	cn.cmd("EXPN "+team, "421 4.7.0 ")
	if !cn.closed() {
		t.Fatal("connection open after 13 VRFY/EXPN")
	}

	// The directory unavailable: 451 4.4.3, no internal text.
	cn = c.authenticated()
	carol := c.user("carol", "b1")
	staff := c.list("staff", "carol")
	c.relays["ldap"].Break()
	cn.cmd("VRFY "+carol, "451 4.4.3 ")
	cn.cmd("EXPN "+staff, "451 4.4.3 ")
	c.relays["ldap"].Restore()
	cn.cmd("NOOP", "250 ")
	if !strings.Contains(c.log.String(), "command=VRFY argument=guess0@"+domain+" code=550") {
		t.Error("refused VRFY not logged")
	}
	assertNoInternalText(t, c)
}
