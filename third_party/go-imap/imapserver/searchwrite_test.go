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

// numsSession answers SEARCH with a fixed set: 1:3, 5, 7:20000 for SEARCH
// ALL, and a set holding "*" otherwise.
type numsSession struct {
	imapserver.Session
}

func (s *numsSession) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	if len(criteria.Flag) > 0 {
		return &imap.SearchData{All: imap.SeqSet{{Start: 4, Stop: 0}}}, nil
	}
	return &imap.SearchData{All: imap.SeqSet{{Start: 1, Stop: 3}, {Start: 5, Stop: 5}, {Start: 7, Stop: 20000}}}, nil
}

// A SEARCH response of many numbers (written in 32 KiB pieces) lists each
// once, in order; a set with "*" is refused before anything is written.
func TestWriteSearchNumbers(t *testing.T) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("u", "p")
	user.Create("INBOX", nil)
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &numsSession{Session: mem.NewSession()}, nil, nil
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
	br := bufio.NewReaderSize(c, 1<<20)
	fmt.Fprintf(c, "a LOGIN u p\r\nb SELECT INBOX\r\nc SEARCH ALL\r\nd SEARCH SEEN\r\n")
	var lines []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.TrimRight(l, "\r\n"))
		if strings.HasPrefix(l, "d ") {
			break
		}
	}
	var want strings.Builder
	want.WriteString("* SEARCH 1 2 3 5")
	for n := 7; n <= 20000; n++ {
		fmt.Fprintf(&want, " %d", n)
	}
	var search []string
	for _, l := range lines {
		if strings.HasPrefix(l, "* SEARCH") {
			search = append(search, l)
		}
	}
	if len(search) != 1 || search[0] != want.String() {
		t.Fatalf("SEARCH responses: %d, first %.80q…", len(search), search)
	}
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "d NO") && !strings.HasPrefix(last, "d BAD") {
		t.Fatalf("SEARCH with \"*\": %q", last)
	}
	if prev := lines[len(lines)-2]; !strings.HasPrefix(prev, "c OK") {
		t.Fatalf("line before the refusal: %q", prev)
	}
}
