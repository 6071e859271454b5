package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailcluster/admin"
	"mailcluster/backend/store"
	"mailcluster/internal/imapenvelope"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// deliverEnvelope stores a message for account whose envelope is env as
// given (with or without its IMAP form) and returns its INBOX id and UID.
func (q *queueSite) deliverEnvelope(account string, env *mailboxv1.Envelope) (int64, uint32) {
	q.t.Helper()
	ctx := context.Background()
	msg := &store.NewMessage{BlobKey: "m/env/" + account + "/" + env.MessageId, Size: 10, Envelope: env, Structure: &mailboxv1.BodyStructure{}}
	if err := q.st.StartUpload(ctx, msg.BlobKey); err != nil {
		q.t.Fatal(err)
	}
	res, err := q.st.Deliver(ctx, msg, []store.Delivery{{Account: account}})
	if err != nil || res[0].Status != mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK {
		q.t.Fatalf("deliver: %v %+v", err, res)
	}
	return res[0].MailboxID, res[0].UID
}

// rendered counts the messages of account's INBOX whose envelope is stored
// with its IMAP form.
func (q *queueSite) rendered(account string, mailboxID int64) int {
	q.t.Helper()
	n := 0
	err := q.st.Fetch(context.Background(), account, mailboxID, nil, store.FetchOptions{Envelope: true}, func(rows []store.FetchRow) error {
		for _, r := range rows {
			if store.EnvelopeIMAP(r.Envelope) != nil {
				n++
			}
		}
		return nil
	})
	if err != nil {
		q.t.Fatal(err)
	}
	return n
}

// `admin envelopes backfill` renders the envelopes stored without their
// IMAP form, reports what it did, can be interrupted and run again, and a
// run after it has nothing to do.
func TestAdminEnvelopesBackfill(t *testing.T) {
	q := newQueueSite(t)
	var mailboxID int64
	for i := 0; i < 3; i++ {
		env := &mailboxv1.Envelope{Subject: fmt.Sprintf("old %d", i), MessageId: fmt.Sprintf("<old%d@example.test>", i)}
		mailboxID, _ = q.deliverEnvelope("acct-1", env)
	}
	env := &mailboxv1.Envelope{Subject: "new", MessageId: "<new@example.test>"}
	env.Imap = imapenvelope.Encode(env)
	q.deliverEnvelope("acct-1", env)
	if n := q.rendered("acct-1", mailboxID); n != 1 {
		t.Fatalf("%d rendered before the backfill", n)
	}

	// Interrupted (as by Ctrl-C) while it pauses after its first batch.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for deadline := time.Now().Add(time.Minute); q.rendered("acct-1", mailboxID) < 2 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	var out, errb bytes.Buffer
	code := admin.Main(ctx, []string{"--postgres-dsn=" + q.dsn, "envelopes", "backfill", "--batch", "1", "--pause", "1h"}, &out, &errb)
	cancel()
	if code != 1 || !strings.Contains(errb.String(), "interrupted after rendering 1 envelope(s)") ||
		!strings.Contains(errb.String(), "run it again") || !strings.Contains(errb.String(), "1 message(s) read, 1 envelope(s) rendered so far") {
		t.Fatalf("interrupted: exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}

	out2 := q.ok("envelopes", "backfill", "--batch", "2")
	if !strings.Contains(out2, "4 message(s) read, 2 envelope(s) rendered") {
		t.Fatalf("backfill printed:\n%s", out2)
	}
	if n := q.rendered("acct-1", mailboxID); n != 4 {
		t.Fatalf("%d of 4 rendered after the backfill", n)
	}
	var p map[string]int64
	out3 := q.ok("envelopes", "backfill", "--json")
	if err := json.Unmarshal([]byte(out3), &p); err != nil || p["scanned"] != 4 || p["updated"] != 0 || p["unreadable"] != 0 {
		t.Fatalf("second run --json: %v\n%s", err, out3)
	}

	q.fail(2, "--batch must be between 1 and", "envelopes", "backfill", "--batch", "0")
	q.fail(2, "--pause must not be negative", "envelopes", "backfill", "--pause", "-1s")
	q.fail(2, "wrong number of arguments", "envelopes", "backfill", "now")
	var none bytes.Buffer
	if code := admin.Main(context.Background(), []string{"envelopes", "backfill"}, &none, &none); code != 2 || !strings.Contains(none.String(), "postgres-dsn") {
		t.Fatalf("without postgres-dsn: exit %d %s", code, none.String())
	}
}
