package pool

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// fakeBackend serves only the gRPC health service.
func fakeBackend(t *testing.T) (string, *health.Server) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	hs.SetServingStatus(mailboxv1.Mailbox_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String(), hs
}

func TestRouteFollowsHealth(t *testing.T) {
	addrs := map[string]string{}
	hs := map[string]*health.Server{}
	for _, n := range []string{"b1", "b2", "b3"} {
		addrs[n], hs[n] = fakeBackend(t)
	}
	p, err := New(context.Background(), Config{Backends: addrs, HealthInterval: 50 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	route := func(acc, host string) string {
		b, err := p.Route(acc, host)
		if err != nil {
			return err.Error()
		}
		return b.Name
	}
	if got := route("acc-1", "b2"); got != "b2" {
		t.Fatalf("mailHost b2: %s", got)
	}
	// Without (or with an unknown) mailHost the choice is stable per account
	// and spreads accounts over backends.
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		acc := "acc-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		first := route(acc, "")
		if route(acc, "nosuch") != first || route(acc, "") != first {
			t.Fatalf("unstable route for %s", acc)
		}
		seen[first] = true
	}
	if len(seen) != 3 {
		t.Fatalf("accounts spread over %v", seen)
	}
	// b2 goes down: its accounts move to one stable substitute; accounts of
	// other backends do not move.
	before := map[string]string{}
	for i := 0; i < 50; i++ {
		acc := "x" + string(rune('a'+i))
		before[acc] = route(acc, "")
	}
	hs["b2"].SetServingStatus(mailboxv1.Mailbox_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(t, func() bool { return !p.Backend("b2").Healthy() })
	sub := route("acc-1", "b2")
	if sub == "b2" || sub != route("acc-1", "b2") {
		t.Fatalf("substitute for b2: %s", sub)
	}
	for acc, was := range before {
		if now := route(acc, ""); was != "b2" && now != was {
			t.Fatalf("%s moved from healthy %s to %s", acc, was, now)
		}
	}
	// Back up: traffic returns to mailHost.
	hs["b2"].SetServingStatus(mailboxv1.Mailbox_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	waitFor(t, func() bool { return p.Backend("b2").Healthy() })
	if got := route("acc-1", "b2"); got != "b2" {
		t.Fatalf("after recovery: %s", got)
	}
	// All down.
	for _, h := range hs {
		h.SetServingStatus(mailboxv1.Mailbox_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	waitFor(t, func() bool {
		_, err := p.Route("acc-1", "b1")
		return errors.Is(err, ErrNoBackend)
	})
	// MarkDown takes a backend out at once.
	hs["b1"].SetServingStatus(mailboxv1.Mailbox_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	waitFor(t, func() bool { return p.Backend("b1").Healthy() })
	p.MarkDown(p.Backend("b1"))
	if p.Backend("b1").Healthy() {
		t.Fatal("MarkDown did not take effect")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestParseBackends(t *testing.T) {
	m, err := ParseBackends([]string{"b1=127.0.0.1:7070", " b2 = h:1 "})
	if err != nil || m["b1"] != "127.0.0.1:7070" || m["b2"] != "h:1" {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range [][]string{{"b1"}, {"=h:1"}, {"b1="}, {"b1=h:1", "b1=h:2"}} {
		if _, err := ParseBackends(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
