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

// itemsSession writes each message twice: with WriteItems as message n
// and with a FetchResponseWriter as message n+100, for comparison.
type itemsSession struct {
	imapserver.Session
}

var itemsDate = time.Date(2026, 1, 5, 7, 8, 9, 0, time.FixedZone("", -5*3600))

func (s *itemsSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	env := imapserver.EncodeEnvelope(rawTestEnvelope)
	cases := []imapserver.FetchItems{
		{WithUID: true, UID: 7, WithFlags: true, Flags: []imap.Flag{imap.FlagSeen, "$Work"}, WithModSeq: true, ModSeq: 1 << 40,
			WithInternalDate: true, InternalDate: itemsDate, WithRFC822Size: true, RFC822Size: 12345, Envelope: env},
		{WithFlags: true},
		{WithRFC822Size: true, Envelope: env},
		{WithModSeq: true, ModSeq: 3, WithInternalDate: true, InternalDate: itemsDate},
	}
	for i, it := range cases {
		if err := w.WriteItems(uint32(i+1), &it); err != nil {
			return err
		}
		rw := w.CreateMessage(uint32(i + 101))
		if it.WithUID {
			rw.WriteUID(it.UID)
		}
		if it.WithFlags {
			rw.WriteFlags(it.Flags)
		}
		if it.WithModSeq {
			rw.WriteModSeq(it.ModSeq)
		}
		if it.WithInternalDate {
			rw.WriteInternalDate(it.InternalDate)
		}
		if it.WithRFC822Size {
			rw.WriteRFC822Size(it.RFC822Size)
		}
		if it.Envelope != nil {
			rw.WriteEnvelopeRaw(it.Envelope)
		}
		if err := rw.Close(); err != nil {
			return err
		}
	}
	if err := w.WriteItems(9, &imapserver.FetchItems{WithFlags: true, Flags: []imap.Flag{"bad flag"}}); err == nil {
		return fmt.Errorf("WriteItems wrote an invalid flag")
	}
	return nil
}

// WriteItems writes what the FetchResponseWriter methods write, byte for
// byte, and refuses a flag that is not an atom.
func TestWriteItems(t *testing.T) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("u", "p")
	user.Create("INBOX", nil)
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &itemsSession{Session: mem.NewSession()}, nil, nil
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
	fmt.Fprintf(c, "a LOGIN u p\r\nb SELECT INBOX\r\nc FETCH 1 FLAGS\r\n")
	got := map[string]string{}
	var done string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(l, "c ") {
			done = l
			break
		}
		var n int
		if _, err := fmt.Sscanf(l, "* %d FETCH ", &n); err == nil {
			got[fmt.Sprint(n)] = l[strings.Index(l, " FETCH ")+len(" FETCH "):]
		}
	}
	if !strings.HasPrefix(done, "c OK") {
		t.Fatalf("FETCH: %q", done)
	}
	for i := 1; i <= 4; i++ {
		a, b := got[fmt.Sprint(i)], got[fmt.Sprint(i+100)]
		if a == "" || a != b {
			t.Errorf("message %d: WriteItems %q, FetchResponseWriter %q", i, a, b)
		}
	}
	if want := `(UID 7 FLAGS (\Seen $Work) MODSEQ (1099511627776) INTERNALDATE " 5-Jan-2026 07:08:09 -0500" RFC822.SIZE 12345 ENVELOPE (`; !strings.HasPrefix(got["1"], want) {
		t.Errorf("message 1: %q, want it to start %q", got["1"], want)
	}
}
