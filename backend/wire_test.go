package backend

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/grpc/mem"
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

// A message in several buffers decodes as the whole would, and its bytes
// are its own: decoding the next message into the pooled buffer leaves
// them as they were.
func TestCodecUnmarshalGathers(t *testing.T) {
	c := newCodec()
	split := func(b []byte) mem.BufferSlice {
		third := len(b) / 3
		return mem.BufferSlice{mem.SliceBuffer(b[:third]), mem.SliceBuffer(b[third : 2*third]), mem.SliceBuffer(b[2*third:])}
	}
	chunk := func(fill byte) []byte { return bytes.Repeat([]byte{fill}, 100<<10) }
	var msgs []*mailboxv1.DeliverRequest
	for _, fill := range []byte{'a', 'b'} {
		b, err := proto.Marshal(&mailboxv1.DeliverRequest{Part: &mailboxv1.DeliverRequest_Chunk{Chunk: chunk(fill)}})
		if err != nil {
			t.Fatal(err)
		}
		m := &mailboxv1.DeliverRequest{}
		if err := c.Unmarshal(split(b), m); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	for i, fill := range []byte{'a', 'b'} {
		if !bytes.Equal(msgs[i].GetChunk(), chunk(fill)) {
			t.Errorf("message %d: chunk of %d octets, not %d of %q", i, len(msgs[i].GetChunk()), 100<<10, fill)
		}
	}
	if err := c.Unmarshal(split([]byte{0xff, 0xff, 0xff}), &mailboxv1.DeliverRequest{}); err == nil {
		t.Error("garbage decoded without an error")
	}
}
