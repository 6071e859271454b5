package backend

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// /metrics reports deliveries, RPCs, PostgreSQL and blob timings with
// bounded labels; /healthz and /readyz answer.
func TestMetricsAndHealth(t *testing.T) {
	e := newEnv(t, 1, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.backends[0].ServeHTTP(l)
	base := "http://" + l.Addr().String()
	mustDeliver(t, e.client(0), testMessage("m", "x"), "metrics-acct")
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`mailcluster_backend_deliveries_total{status="DELIVERY_STATUS_OK"} 1`,
		`mailcluster_backend_rpc_duration_seconds_count{code="OK",method="/mailcluster.mailbox.v1.Mailbox/Deliver"} 1`,
		`mailcluster_backend_blob_duration_seconds_count{op="put",result="ok"} 1`,
		`mailcluster_backend_postgres_duration_seconds_count{op="Deliver",result="ok"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "metrics-acct") {
		t.Error("/metrics names an account")
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz: %d", code)
	}
	if code, _ := get("/debug/pprof/"); code != 404 {
		t.Fatalf("/debug/pprof/ without http-pprof: %d, want 404", code)
	}
}
