package imapenvelope

import (
	"testing"
	"time"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

func TestParseDate(t *testing.T) {
	want := time.Date(2006, 1, 2, 15, 4, 5, 0, time.FixedZone("", -7*3600))
	for _, s := range []string{
		"Mon, 02 Jan 2006 15:04:05 -0700", "Mon, 2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 -0700",
		"  Mon, 02 Jan 2006 15:04:05 -0700 (MST)", "Mon, 2 Jan 2006 15:04:05 -0700 (MST)",
	} {
		if got := parseDate(s); !got.Equal(want) {
			t.Errorf("%q: %v", s, got)
		}
	}
	for _, s := range []string{"", "yesterday", "Mon, 32 Jan 2006 15:04:05 -0700"} {
		if got := parseDate(s); !got.IsZero() {
			t.Errorf("%q: %v", s, got)
		}
	}
}

func BenchmarkParseDate(b *testing.B) {
	for i := 0; i < b.N; i++ {
		parseDate("Mon, 02 Jan 2006 15:04:05 +0000")
	}
}

// Encode gives what imapserver writes for FromProto's value, with group
// syntax, display names as encoded words and a missing date as NIL.
func TestEncode(t *testing.T) {
	e := &mailboxv1.Envelope{
		Date:    "Mon, 2 Jan 2006 15:04:05 -0700",
		Subject: "Grüße",
		From:    []*mailboxv1.Address{{Name: "Zoë", Mailbox: "zoe", Host: "example.test"}},
		To: []*mailboxv1.Address{{GroupStart: true, Name: "team"}, {Mailbox: "a", Host: "b.test"},
			{GroupEnd: true}},
		InReplyTo: "<x@y> <z@w>",
		MessageId: "<id@example.test>",
	}
	want := `("Mon, 02 Jan 2006 15:04:05 -0700" "=?utf-8?q?Gr=C3=BC=C3=9Fe?=" ` +
		`(("=?utf-8?q?Zo=C3=AB?=" NIL "zoe" "example.test")) (("=?utf-8?q?Zo=C3=AB?=" NIL "zoe" "example.test")) ` +
		`(("=?utf-8?q?Zo=C3=AB?=" NIL "zoe" "example.test")) ((NIL NIL "team" NIL) (NIL NIL "a" "b.test") (NIL NIL NIL NIL)) ` +
		`NIL NIL "<x@y> <z@w>" "<id@example.test>")`
	if got := string(Encode(e)); got != want {
		t.Errorf("Encode:\n got %s\nwant %s", got, want)
	}
	if got := string(Encode(&mailboxv1.Envelope{Date: "yesterday"})); got != `(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)` {
		t.Errorf("empty: %s", got)
	}
}
