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
	st, _ := proto.Marshal(&mailboxv1.BodyStructure{Type: "text", Subtype: "plain", Size: 3, Parts: []*mailboxv1.BodyStructure{{Type: "x"}}})
	date := time.Unix(1790000000, 0)
	rows := []store.FetchRow{
		{UID: 1, Flags: 5, Keywords: []string{"$Junk", "work"}, Modseq: 9, Size: 100, BodyID: "m/k1", InternalDate: date, Envelope: env, Structure: st, Header: []byte("A: b\r\n\r\n")},
		{UID: 70000, Modseq: 1 << 40, Size: 0, InternalDate: date},
	}
	for _, dates := range []bool{true, false} {
		var got mailboxv1.FetchResponse
		if err := proto.Unmarshal(appendFetchResponse(nil, rows, dates), &got); err != nil {
			t.Fatal(err)
		}
		want := &mailboxv1.FetchResponse{}
		for i := range rows {
			m, err := rows[i].Meta(dates)
			if err != nil {
				t.Fatal(err)
			}
			want.Messages = append(want.Messages, m)
		}
		if !proto.Equal(&got, want) {
			t.Fatalf("dates=%v:\n got %v\nwant %v", dates, &got, want)
		}
	}
}
