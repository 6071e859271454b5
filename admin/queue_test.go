package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"mailcluster/admin"
	"mailcluster/backend/store"
	"mailcluster/backend/store/storetest"
	"mailcluster/internal/testenv"
)

// queueSite is a test database for the queue and dkim commands.
type queueSite struct {
	t   *testing.T
	dsn string
	st  *store.Store
}

func newQueueSite(t *testing.T) *queueSite {
	pg := testenv.StartPostgres(t)
	dsn := storetest.Database(t, pg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{DSN: dsn, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return &queueSite{t: t, dsn: dsn, st: st}
}

func (q *queueSite) run(args ...string) (string, string, int) {
	q.t.Helper()
	var out, errb bytes.Buffer
	code := admin.Main(context.Background(), append([]string{"--postgres-dsn=" + q.dsn}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func (q *queueSite) ok(args ...string) string {
	q.t.Helper()
	out, errs, code := q.run(args...)
	if code != 0 {
		q.t.Fatalf("admin %q: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

func (q *queueSite) fail(code int, want string, args ...string) {
	q.t.Helper()
	out, errs, c := q.run(args...)
	if c != code || !strings.Contains(errs, want) {
		q.t.Fatalf("admin %q: exit %d (want %d)\nstdout: %s\nstderr: %s (want %q)", args, c, code, out, errs, want)
	}
}

// `admin dkim` creates, lists and deletes keys and prints the DNS record.
func TestAdminDKIM(t *testing.T) {
	q := newQueueSite(t)
	out := q.ok("dkim", "generate", "Example.TEST", "--selector", "s1", "--algorithm", "ed25519")
	if !strings.Contains(out, `s1._domainkey.example.test. IN TXT`) || !strings.Contains(out, "k=ed25519") ||
		!strings.Contains(out, "mailcluster admin dkim activate example.test s1") {
		t.Fatalf("generate printed:\n%s", out)
	}
	out = q.ok("dkim", "generate", "example.test", "--selector", "s2", "--json")
	var g map[string]any
	if err := json.Unmarshal([]byte(out), &g); err != nil || g["algorithm"] != "rsa" || !strings.HasPrefix(g["record_value"].(string), "v=DKIM1; k=rsa; p=") {
		t.Fatalf("generate --json: %v\n%s", err, out)
	}
	q.fail(1, "already has a key with selector s1", "dkim", "generate", "example.test", "--selector", "s1")
	q.fail(2, "", "dkim", "generate", "bad_domain!", "--selector", "s3")
	q.fail(2, "", "dkim", "generate", "example.test", "--algorithm", "dsa")
	keys, err := q.st.DKIMKeys(context.Background())
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys %v %v", keys, err)
	}
	out = q.ok("dkim", "list")
	if !strings.Contains(out, "example.test") || strings.Count(out, "yes") != 0 {
		t.Fatalf("list before activation (nothing signs):\n%s", out)
	}
	if out := q.ok("dkim", "activate", "example.test", "s1"); !strings.Contains(out, "is active") {
		t.Fatalf("activate: %s", out)
	}
	q.fail(1, "no such DKIM key", "dkim", "activate", "example.test", "nope")
	out = q.ok("dkim", "list", "--json")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	for _, r := range rows {
		if want := r["selector"] == "s1"; r["signing"] != want || r["active"] != want {
			t.Errorf("key %v: signing %v active %v", r["selector"], r["signing"], r["active"])
		}
	}
	q.ok("dkim", "delete", "example.test", "s1")
	q.fail(1, "no such DKIM key", "dkim", "delete", "example.test", "s1")
	var none bytes.Buffer
	if code := admin.Main(context.Background(), []string{"dkim", "list"}, &none, &none); code != 2 || !strings.Contains(none.String(), "postgres-dsn") {
		t.Fatalf("without postgres-dsn: exit %d %s", code, none.String())
	}
}

// `admin queue` lists and shows why mail waits, retries and deletes.
func TestAdminQueue(t *testing.T) {
	q := newQueueSite(t)
	ctx := context.Background()
	if out := q.ok("queue", "list"); !strings.Contains(out, "The queue is empty.") {
		t.Fatalf("empty list:\n%s", out)
	}
	msg := &store.NewMessage{BlobKey: "m/test/1", Size: 100}
	if err := q.st.StartUpload(ctx, msg.BlobKey); err != nil {
		t.Fatal(err)
	}
	_, id, err := q.st.DeliverAndQueue(ctx, msg, nil, &store.QueueEntry{MailFrom: "alice@example.test",
		Recipients: []string{"bob@far.test", "carol@far.test"}, Submitter: "acct-1", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// One attempt that failed temporarily for bob.
	claims, err := q.st.ClaimDue(ctx, 10, time.Minute, 7)
	if err != nil || len(claims) != 1 {
		t.Fatalf("claim: %v %+v", err, claims)
	}
	if _, err := q.st.RecordAttempt(ctx, &claims[0], []store.Outcome{
		{Recipient: "bob@far.test", Next: time.Now().Add(time.Hour), Error: "451 4.3.2 greylisted (from mx.far.test)"},
		{Recipient: "carol@far.test", Done: true},
	}); err != nil {
		t.Fatal(err)
	}
	out := q.ok("queue", "list")
	if !strings.Contains(out, "alice@example.test") || !strings.Contains(out, "451 4.3.2 greylisted") {
		t.Fatalf("list:\n%s", out)
	}
	ids := strings.TrimSpace(strings.Fields(strings.Split(out, "\n")[1])[0])
	out = q.ok("queue", "show", ids)
	for _, want := range []string{"bob@far.test", "attempts: 1", "last error: 451 4.3.2 greylisted", "submitter:  acct-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "carol@far.test") {
		t.Errorf("show lists a delivered recipient:\n%s", out)
	}
	if out := q.ok("queue", "retry", ids); !strings.Contains(out, "1 recipient(s) due now") {
		t.Fatalf("retry:\n%s", out)
	}
	if out := q.ok("queue", "retry", "all"); !strings.Contains(out, "0 recipient(s)") {
		t.Fatalf("retry all:\n%s", out)
	}
	q.fail(2, "is not a queue id", "queue", "show", "x1")
	q.fail(1, "no such queue entry", "queue", "show", "999999")
	q.ok("queue", "delete", ids)
	q.fail(1, "no such queue entry", "queue", "delete", ids)
	if l, _ := q.st.QueueList(ctx, 10); len(l) != 0 || id == 0 {
		t.Fatalf("after delete: %+v", l)
	}
}
