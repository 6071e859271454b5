package smtpserver_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailcluster/frontend"
)

// The backend disappears in the middle of DATA: the client gets 451 and
// nothing is stored; once the backend is back, the retry is stored exactly
// once.
func TestBackendStopsDuringData(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.cmd("DATA", "354 ")
	msg := message("cut", strings.Repeat("a line of the message body\r\n", 20000))
	cn.send(msg[:len(msg)/2])
	time.Sleep(100 * time.Millisecond)
	c.relays["b1"].Break()
	cn.send(msg[len(msg)/2:] + ".\r\n")
	cn.expect("451 4.3.0 ")
	// The session goes on.
	cn.cmd("NOOP", "250 ")
	if n := c.count(alice); n != 0 {
		t.Fatalf("%d messages stored after a failed DATA", n)
	}
	c.relays["b1"].Restore()
	waitFor(t, func() bool { return c.fe.Pool.Backend("b1").Healthy() })
	cn.mustSend(alice, msg)
	box := c.inbox(alice)
	if len(box) != 1 {
		t.Fatalf("%d messages stored, want exactly 1", len(box))
	}
	if _, rest := stripReceived(t, box[0]); string(rest) != msg {
		t.Fatal("stored message differs")
	}
	assertNoInternalText(t, c)
}

// S3 fails while a message is being stored: 451, nothing stored.
func TestS3FailsDuringData(t *testing.T) {
	c := newCluster(t, options{backends: 1, useS3Rly: true})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.cmd("DATA", "354 ")
	msg := message("s3cut", strings.Repeat("body line\r\n", 1000))
	cn.send(msg)
	c.relays["s3"].Break()
	cn.send(".\r\n")
	cn.expect("451 4.3.0 ")
	if n := c.count(alice); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	c.relays["s3"].Restore()
	// The backend reports itself healthy again within its check interval.
	waitFor(t, func() bool {
		cn.send("MAIL FROM:<sender@remote.test>\r\nRCPT TO:<" + alice + ">\r\n")
		cn.expect("250 ")
		cn.expect("250 ")
		ok := strings.HasPrefix(cn.data(msg), "250 ")
		if !ok {
			time.Sleep(500 * time.Millisecond)
		}
		return ok
	})
	if n := c.count(alice); n != 1 {
		t.Fatalf("%d messages stored, want exactly 1", n)
	}
	assertNoInternalText(t, c)
}

// A user whose backend is down is served by another (storage is shared).
func TestFailoverToHealthyBackend(t *testing.T) {
	c := newCluster(t, options{backends: 2})
	alice := c.user("alice", "b1")
	c.relays["b1"].Break()
	waitFor(t, func() bool { return !c.fe.Pool.Backend("b1").Healthy() })
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.mustSend(alice, message("failover", "x\r\n"))
	if n := c.count(alice); n != 1 {
		t.Fatalf("%d messages", n)
	}
	if !strings.Contains(c.log.String(), "backend=b2") {
		t.Error("delivery was not logged as going to b2")
	}
}

// The size limit: SIZE= is checked at MAIL, and a message that grows past
// the limit while streaming gets 552 5.3.4 with nothing stored; the session
// goes on.
func TestSizeLimit(t *testing.T) {
	c := newCluster(t, options{backends: 1, mod: func(cfg *frontend.Config) { cfg.SMTP.MaxMessageSize = 64 << 10 }})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	ehlo := cn.cmd("EHLO client.remote.test", "250-")
	if !strings.Contains(ehlo, "SIZE 65536") {
		t.Fatalf("EHLO: %s", ehlo)
	}
	cn.cmd("MAIL FROM:<sender@remote.test> SIZE=70000", "552 5.3.4 ")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	big := message("big", strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 2000))
	cn.expectData(big, "552 5.3.4 ")
	cn.cmd("NOOP", "250 ")
	// BDAT past the limit.
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.send("BDAT " + itoa(len(big)) + " LAST\r\n" + big)
	cn.expect("552 5.3.4 ")
	cn.cmd("NOOP", "250 ")
	// Just under the limit is fine.
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	ok := message("ok", strings.Repeat("x", 998)+"\r\n")
	if r := cn.data(ok); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}
	if n := c.count(alice); n != 1 {
		t.Fatalf("%d messages", n)
	}
}

// expectData sends a whole message after DATA and expects a reply.
func (cn *conn) expectData(msg, prefix string) string {
	cn.t.Helper()
	cn.cmd("DATA", "354 ")
	cn.send(dotStuff(msg) + ".\r\n")
	return cn.expect(prefix)
}

// The frontend's /metrics, /healthz and /readyz.
func TestMetricsEndpoint(t *testing.T) {
	c := newCluster(t, options{backends: 1, mod: func(cfg *frontend.Config) { cfg.HTTPListen = "127.0.0.1:0" }})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<nobody@"+domain+">", "550 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	if r := cn.data(message("metrics", "x\r\n")); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + c.fe.HTTPAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	_, m := get("/metrics")
	for _, want := range []string{
		`mailcluster_smtp_messages_total{listener="smtp",reply="250 2.0.0"} 1`,
		`mailcluster_smtp_recipients_total{listener="smtp",reply="550 5.1.1"} 1`,
		`mailcluster_smtp_recipients_total{listener="smtp",reply="250"} 1`,
		`mailcluster_frontend_backend_healthy{backend="b1"} 1`,
		`mailcluster_smtp_sessions_total{listener="smtp"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
	c.relays["b1"].Break()
	waitFor(t, func() bool { code, _ := get("/readyz"); return code == 503 })
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
}

// A frontend killed during DATA has acknowledged nothing and stored
// nothing; a graceful shutdown lets the message in flight finish.
func TestShutdownDuringData(t *testing.T) {
	c := newCluster(t, options{backends: 1})
	alice := c.user("alice", "b1")
	cn := c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.cmd("DATA", "354 ")
	msg := message("graceful", strings.Repeat("line\r\n", 1000))
	cn.send(msg[:len(msg)/2])
	done := make(chan struct{})
	go func() {
		c.fe.Shutdown(10 * time.Second)
		close(done)
	}()
	time.Sleep(200 * time.Millisecond)
	// New connections are refused while the session finishes.
	if nc, err := net.DialTimeout("tcp", c.fe.Addr(frontend.ListenerSMTP).String(), time.Second); err == nil {
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, _ := nc.Read(make([]byte, 10)); n > 0 {
			t.Error("a new connection was served during shutdown")
		}
		nc.Close()
	}
	cn.send(msg[len(msg)/2:] + ".\r\n")
	cn.expect("250 ")
	cn.cmd("QUIT", "221 ")
	<-done
	if n := c.count(alice); n != 1 {
		t.Fatalf("%d messages", n)
	}

	// Killed (Close) in the middle of DATA: no reply, nothing stored.
	c.startFrontend()
	cn = c.dial(frontend.ListenerSMTP)
	cn.cmd("EHLO client.remote.test", "250-")
	cn.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	cn.cmd("RCPT TO:<"+alice+">", "250 ")
	cn.cmd("DATA", "354 ")
	cn.send(msg[:len(msg)/2])
	time.Sleep(100 * time.Millisecond)
	c.fe.Close()
	if r := cn.reply(); strings.HasPrefix(r, "250") {
		t.Fatalf("reply after kill: %q", r)
	}
	time.Sleep(500 * time.Millisecond)
	if n := c.count(alice); n != 1 {
		t.Fatalf("%d messages after a kill during DATA", n)
	}
}
