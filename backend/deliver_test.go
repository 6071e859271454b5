package backend

import (
	"bytes"

	"strings"
	"testing"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

func testMessage(subject, body string) []byte {
	return []byte("From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: " + subject +
		"\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + subject + "@example.test>\r\n\r\n" + body)
}

func TestDeliverFetchBody(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	msg := testMessage("hello", "Hi Bob,\r\n.dot line\r\n\xe2\x82\xac 8-bit\r\n")
	res := mustDeliver(t, c, msg, "acct-a", "acct-b")
	if res[0].Uid != 1 || res[1].Uid != 1 {
		t.Fatalf("uids %d %d", res[0].Uid, res[1].Uid)
	}
	for _, a := range []string{"acct-a", "acct-b"} {
		sel := selectBox(t, c, a, "INBOX")
		if sel.Status.Messages != 1 || sel.Status.UidNext != 2 || sel.Status.Unseen != 1 || sel.FirstUnseenUid != 1 {
			t.Fatalf("%s status %+v", a, sel.Status)
		}
		ms := fetchAll(t, c, a, sel.Status.MailboxId, true)
		if len(ms) != 1 {
			t.Fatalf("%s: %d messages", a, len(ms))
		}
		m := ms[0]
		if m.Size != int64(len(msg)) || m.Envelope.GetSubject() != "hello" || m.BodyStructure.GetType() != "text" {
			t.Fatalf("meta %+v", m)
		}
		if !bytes.HasPrefix(msg, m.Header) || !bytes.HasSuffix(m.Header, []byte("\r\n\r\n")) {
			t.Fatalf("header %q", m.Header)
		}
		got, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: a, MailboxId: sel.Status.MailboxId, Uid: 1})
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("body %q %v", got, err)
		}
	}
	// Store once: both recipients reference one body.
	a := fetchAll(t, c, "acct-a", selectBox(t, c, "acct-a", "INBOX").Status.MailboxId, false)
	b := fetchAll(t, c, "acct-b", selectBox(t, c, "acct-b", "INBOX").Status.MailboxId, false)
	if a[0].BodyId != b[0].BodyId {
		t.Fatalf("two bodies stored: %s %s", a[0].BodyId, b[0].BodyId)
	}
}

func TestDeliverLargeMultipart(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	var sb strings.Builder
	sb.WriteString("From: a@example.test\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XYZ\r\n\r\npreamble\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\nfirst part text\r\n--XYZ\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for sb.Len() < 3<<20 {
		sb.WriteString("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n")
	}
	sb.WriteString("--XYZ--\r\n")
	msg := []byte(sb.String())
	mustDeliver(t, c, msg, "big")
	id := selectBox(t, c, "big", "INBOX").Status.MailboxId
	got, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "big", MailboxId: id, Uid: 1})
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("body mismatch: %d bytes, %v", len(got), err)
	}
	part, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "big", MailboxId: id, Uid: 1, Part: []uint32{1}})
	if err != nil || string(part) != "first part text" {
		t.Fatalf("part 1 = %q, %v", part, err)
	}
	mime, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "big", MailboxId: id, Uid: 1, Part: []uint32{1}, Section: mailboxv1.BodySection_BODY_SECTION_MIME})
	if err != nil || string(mime) != "Content-Type: text/plain\r\n\r\n" {
		t.Fatalf("part 1 MIME = %q, %v", mime, err)
	}
	rng, first, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "big", MailboxId: id, Uid: 1, Offset: 100, Length: 70000})
	if err != nil || !bytes.Equal(rng, msg[100:70100]) || first.TotalSize != 70000 {
		t.Fatalf("range: %d bytes, %v", len(rng), err)
	}
	if _, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "big", MailboxId: id, Uid: 1, Part: []uint32{3}}); err == nil {
		t.Fatal("part 3 exists?")
	}
}
