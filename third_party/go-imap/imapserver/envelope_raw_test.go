package imapserver_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

var rawTestEnvelope = &imap.Envelope{
	Date:      time.Date(2026, 11, 25, 10, 0, 0, 0, time.FixedZone("", 3600)),
	Subject:   `Grüße "quoted" \ back`,
	From:      []imap.Address{{Name: "Zoë", Mailbox: "zoe", Host: "example.test"}},
	To:        []imap.Address{{Mailbox: "team"}, {Name: "A", Mailbox: "a", Host: "b.test"}, {}},
	Cc:        []imap.Address{{Name: "line\r\nbreak", Mailbox: "c", Host: "d.test"}},
	InReplyTo: []string{"x@y"},
	MessageID: "id@example.test",
}

// envSession writes message 1's envelope from EncodeEnvelope's bytes and
// message 2's with WriteEnvelope.
type envSession struct {
	imapserver.Session
}

func (s *envSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	rw := w.CreateMessage(1)
	rw.WriteEnvelopeRaw(imapserver.EncodeEnvelope(rawTestEnvelope))
	if err := rw.Close(); err != nil {
		return err
	}
	rw = w.CreateMessage(2)
	rw.WriteEnvelope(rawTestEnvelope)
	return rw.Close()
}

// A pre-rendered envelope goes out byte for byte as WriteEnvelope writes
// it, encoded words for non-ASCII and line breaks included.
func TestEnvelopeRaw(t *testing.T) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("u", "p")
	user.Create("INBOX", nil)
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &envSession{Session: mem.NewSession()}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "a LOGIN u p\r\nb SELECT INBOX\r\nc FETCH 1:2 ENVELOPE\r\n")
	var all strings.Builder
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(l, "c ") {
			break
		}
		all.WriteString(l)
	}
	out := all.String()
	i := strings.Index(out, "* 1 FETCH ")
	j := strings.Index(out, "* 2 FETCH ")
	if i < 0 || j < i {
		t.Fatalf("responses: %q", out)
	}
	one, two := out[i+len("* 1 FETCH "):j], out[j+len("* 2 FETCH "):]
	if one != two {
		t.Errorf("raw envelope\n%q\nWriteEnvelope\n%q", one, two)
	}
	for _, want := range []string{`"=?utf-8?q?Gr=C3=BC=C3=9Fe_\"quoted\"_\\_back?="`, `"<id@example.test>"`, `"<x@y>"`, `"=?utf-8?q?line=0D=0Abreak?="`} {
		if !strings.Contains(one, want) {
			t.Errorf("envelope %q lacks %q", one, want)
		}
	}
}
