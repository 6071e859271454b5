package imap

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"mailcluster/frontend/pool"
)

// When the session's backend goes away, the next command runs on the other
// one (storage is shared) and IDLE keeps working over a new Watch stream.
func TestBackendFailoverMidSession(t *testing.T) {
	st := newStack(t, 2)
	id := st.user("ivy")
	deliver(t, st.clients[0], id, testMessage(1))
	_, addr := st.frontend(nil, 0, 1)
	ev := newEvents()
	c := loginWith(t, addr, "ivy", ev)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true})

	st.backends[0].Close(time.Second)

	msgs := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, UID: true})
	if len(msgs) != 1 || msgs[0].Envelope.Subject != "message 1" {
		t.Fatalf("FETCH after failover: %+v", msgs)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatalf("STORE after failover: %v", err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the Watch stream moves to backend 2
	deliver(t, st.clients[1], id, testMessage(2))
	if n := within(t, ev.exists, 5*time.Second, "EXISTS after failover"); n != 2 {
		t.Fatalf("EXISTS %d", n)
	}
	idle.Close()
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// With no backend at all, commands fail with NO [UNAVAILABLE] and nothing
// internal is said.
func TestNoBackendUnavailable(t *testing.T) {
	st := newStack(t, 1)
	st.user("jay")
	_, addr := st.frontend(nil, 0)
	c := login(t, addr, "jay")
	st.backends[0].Close(time.Second)
	_, err := c.Select("INBOX", nil).Wait()
	e, ok := err.(*imap.Error)
	if !ok || e.Code != imap.ResponseCodeUnavailable {
		t.Fatalf("SELECT with no backend: %v", err)
	}
	if e.Text != errUnavailable.Text {
		t.Fatalf("text %q", e.Text)
	}
}

// The same through the frontend's backend pool (PoolRouter): the account's
// backend stops, the pool moves it to the other one.
func TestPoolRouterFailover(t *testing.T) {
	st := newStack(t, 2)
	id := st.user("quinn")
	deliver(t, st.clients[0], id, testMessage(1))
	p, err := pool.New(context.Background(), pool.Config{Backends: map[string]string{"b0": st.addrs[0], "b1": st.addrs[1]},
		Token: testToken, HealthInterval: 200 * time.Millisecond}, st.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	router := PoolRouter(p)
	cfg := DefaultConfig()
	cfg.InsecureAuth = true
	srv, err := New(cfg, Deps{Auth: st.dir, Router: router}, st.log)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, srv)
	ev := newEvents()
	c := loginWith(t, addr, "quinn", ev)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	b, err := p.Route(id, "")
	if err != nil {
		t.Fatal(err)
	}
	other := 1
	if b.Name == "b1" {
		other = 0
	}
	st.backends[1-other].Close(time.Second)
	msgs := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true})
	if len(msgs) != 1 || msgs[0].Envelope.Subject != "message 1" {
		t.Fatalf("FETCH after the backend stopped: %+v", msgs)
	}
	if nb, err := p.Route(id, ""); err != nil || nb.Name == b.Name {
		t.Fatalf("pool still routes to %v (%v)", nb, err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, st.clients[other], id, testMessage(2))
	within(t, ev.exists, 10*time.Second, "EXISTS through the surviving backend")
	idle.Close()
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// Close lets a FETCH in flight finish its literal before BYE.
func TestGracefulClose(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("uma")
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 40000)
	msg := "Subject: big\r\n\r\n" + body
	deliver(t, st.clients[0], id, []byte(msg))
	srv, addr := st.frontend(nil, 0)
	r := dialRaw(t, addr)
	r.send("a LOGIN uma secret\r\nb SELECT INBOX\r\n")
	r.expect("a OK")
	r.expect("b OK")
	r.send("c FETCH 1 BODY.PEEK[]\r\n")
	head := r.line() // the literal has started
	if !strings.Contains(head, "{"+itoa(len(msg))+"}") {
		t.Fatalf("FETCH: %q", head)
	}
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- srv.Close(ctx)
	}()
	var rest []byte
	buf := make([]byte, 64<<10)
	r.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		n, err := r.conn.Read(buf)
		rest = append(rest, buf[:n]...)
		if err != nil {
			break
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	got := string(r.buf) + string(rest)
	if !strings.HasPrefix(got, msg) {
		t.Fatalf("literal cut short: %d bytes of %d", len(got), len(msg))
	}
	if !strings.Contains(got[len(msg):], "* BYE [UNAVAILABLE]") {
		t.Fatalf("no BYE after the FETCH: %q", got[len(msg):])
	}
}
