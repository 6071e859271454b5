package backend

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"mailcluster/backend/store"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// The hand-written FetchResponse encoding decodes, with the generated code,
// to exactly what the rows hold.
func TestFetchWireFormat(t *testing.T) {
	env, _ := proto.Marshal(&mailboxv1.Envelope{Subject: "s", From: []*mailboxv1.Address{{Name: "A", Mailbox: "a", Host: "h"}}})
	// A stored envelope with its IMAP form is sent as that form alone.
	const wire = `(NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL)`
	envIMAP, _ := proto.Marshal(&mailboxv1.Envelope{Subject: "s", Imap: []byte(wire)})
	st, _ := proto.Marshal(&mailboxv1.BodyStructure{Type: "text", Subtype: "plain", Size: 3, Parts: []*mailboxv1.BodyStructure{{Type: "x"}}})
	date := time.Unix(1790000000, 0)
	rows := []store.FetchRow{
		{UID: 1, Flags: 5, Keywords: []string{"$Junk", "work"}, Modseq: 9, Size: 100, BodyID: "m/k1", InternalDate: date, Envelope: env, Structure: st, Header: []byte("A: b\r\n\r\n")},
		{UID: 70000, Modseq: 1 << 40, Size: 0, InternalDate: date},
		{UID: 70001, Modseq: 3, InternalDate: date, Envelope: envIMAP},
	}
	for _, c := range []struct{ dates, imapForm bool }{{true, true}, {false, true}, {true, false}} {
		dates := c.dates
		var got mailboxv1.FetchResponse
		if err := proto.Unmarshal(appendFetchResponse(nil, rows, dates, c.imapForm), &got); err != nil {
			t.Fatal(err)
		}
		want := &mailboxv1.FetchResponse{}
		for i := range rows {
			m, err := rows[i].Meta(dates, c.imapForm)
			if err != nil {
				t.Fatal(err)
			}
			want.Messages = append(want.Messages, m)
		}
		if !proto.Equal(&got, want) {
			t.Fatalf("dates=%v:\n got %v\nwant %v", dates, &got, want)
		}
		if m := got.Messages[2]; c.imapForm && (string(m.EnvelopeImap) != wire || m.Envelope != nil) {
			t.Errorf("envelope with IMAP form: %v", m)
		} else if !c.imapForm && (m.EnvelopeImap != nil || m.Envelope.GetSubject() != "s" || string(m.Envelope.GetImap()) != wire) {
			t.Errorf("envelope with IMAP form, not asked for: %v", m)
		}
		if m := got.Messages[0]; m.EnvelopeImap != nil || m.Envelope.GetSubject() != "s" {
			t.Errorf("envelope without IMAP form: %v", m)
		}
	}
}
