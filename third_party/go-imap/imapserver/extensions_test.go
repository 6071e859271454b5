package imapserver_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// extSession adds ID, QUOTA and CONDSTORE answers to an in-memory session
// and records what the parsers passed.
type extSession struct {
	imapserver.Session

	clientID *imap.IDData
	fetch    *imap.FetchOptions
	store    *imap.StoreOptions
	// storeCondStore: CONDSTORE was enabled when Store ran.
	storeCondStore bool
	search         *imap.SearchCriteria
	sel            *imap.SelectOptions
	qresync        *imap.SelectQResync
}

func (s *extSession) ResyncSelected(w *imapserver.FetchWriter, q *imap.SelectQResync) error {
	s.qresync = q
	return w.WriteVanished(imap.UIDSetNum(3))
}

func (s *extSession) ID(client *imap.IDData) (*imap.IDData, error) {
	s.clientID = client
	return &imap.IDData{Name: "test", Version: "1"}, nil
}

func (s *extSession) GetQuota(root string) (*imap.QuotaData, error) {
	if root != "" {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such root"}
	}
	return &imap.QuotaData{Root: "", Resources: map[imap.QuotaResourceType]imap.QuotaResourceData{
		imap.QuotaResourceStorage: {Usage: 10, Limit: 512},
		imap.QuotaResourceMessage: {Usage: 1, Limit: 100},
	}}, nil
}

func (s *extSession) GetQuotaRoot(mailbox string) ([]imap.QuotaData, error) {
	d, err := s.GetQuota("")
	return []imap.QuotaData{*d}, err
}

func (s *extSession) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.sel = options
	data, err := s.Session.Select(mailbox, options)
	if data != nil {
		data.HighestModSeq = 7
	}
	return data, err
}

func (s *extSession) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	data, err := s.Session.Status(mailbox, options)
	if data != nil {
		data.HighestModSeq = 7
	}
	return data, err
}

func (s *extSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	s.fetch = options
	rw := w.CreateMessage(1)
	rw.WriteModSeq(6)
	return rw.Close()
}

func (s *extSession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	s.store = options
	s.storeCondStore = w.CondStoreEnabled()
	if options.UnchangedSince != 0 && w.CondStoreEnabled() {
		w.SetModified(imap.SeqSetNum(1))
	}
	return nil
}

func (s *extSession) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	s.search = criteria
	return &imap.SearchData{All: imap.SeqSetNum(1), Count: 1, Min: 1, Max: 1, ModSeq: 9}, nil
}

func startExtServer(t *testing.T, caps imap.CapSet) (addr string, last func() *extSession) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("u", "p")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	sessions := make(chan *extSession, 10)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			s := &extSession{Session: mem.NewSession()}
			sessions <- s
			return s, nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	var cur *extSession
	return l.Addr().String(), func() *extSession {
		select {
		case cur = <-sessions:
		default:
		}
		return cur
	}
}

type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialExt(t *testing.T, addr string) *rawConn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	r.line()
	return r
}

func (r *rawConn) line() string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// do sends a command and returns its response lines, the tagged one last.
func (r *rawConn) do(tag, cmd string) []string {
	r.t.Helper()
	if _, err := r.c.Write([]byte(tag + " " + cmd + "\r\n")); err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for {
		l := r.line()
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

func TestExtensions(t *testing.T) {
	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapID: {}, imap.CapQuota: {}, "QUOTA=RES-STORAGE": {}, imap.CapCondStore: {}, imap.CapQResync: {}}
	addr, last := startExtServer(t, caps)
	r := dialExt(t, addr)

	want := func(got []string, lines ...string) {
		t.Helper()
		if strings.Join(got, "\n") != strings.Join(lines, "\n") {
			t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(lines, "\n"))
		}
	}
	want(r.do("a", `ID ("name" "cli" "os" "x")`), `* ID ("name" "test" "version" "1")`, "a OK ID completed")
	if id := last().clientID; id == nil || id.Name != "cli" || id.OS != "x" {
		t.Errorf("client ID: %+v", id)
	}
	want(r.do("b", "ID NIL"), `* ID ("name" "test" "version" "1")`, "b OK ID completed")
	if last().clientID != nil {
		t.Error("ID NIL: not nil")
	}
	if l := r.do("c", `ID ("a" "1" "a" "2")`); !strings.HasPrefix(l[0], "c BAD") {
		t.Errorf("repeated ID field: %q", l)
	}
	if l := r.do("d", "GETQUOTA \"\""); !strings.HasPrefix(l[0], "d BAD") {
		t.Errorf("GETQUOTA before login: %q", l)
	}
	r.do("e", "LOGIN u p")
	caps1 := r.do("f", "CAPABILITY")[0]
	for _, c := range []string{" ID", " CONDSTORE", " QUOTA QUOTA=RES-STORAGE"} {
		if !strings.Contains(caps1, c) {
			t.Errorf("CAPABILITY lacks %q: %q", c, caps1)
		}
	}
	want(r.do("g", "GETQUOTAROOT INBOX"), `* QUOTAROOT INBOX ""`, `* QUOTA "" (MESSAGE 1 100 STORAGE 10 512)`, "g OK GETQUOTAROOT completed")
	want(r.do("h", "GETQUOTA x"), "h NO [NONEXISTENT] No such root")
	want(r.do("i", "STATUS INBOX (HIGHESTMODSEQ)"), "* STATUS INBOX (HIGHESTMODSEQ 7)", "i OK STATUS completed")

	out := r.do("j", "SELECT INBOX (CONDSTORE)")
	if !strings.Contains(strings.Join(out, "\n"), "* OK [HIGHESTMODSEQ 7] Highest") || !last().sel.CondStore {
		t.Errorf("SELECT (CONDSTORE): %q %+v", out, last().sel)
	}
	want(r.do("k", "FETCH 1 (FLAGS) (CHANGEDSINCE 5)"), "* 1 FETCH (MODSEQ (6))", "k OK FETCH completed")
	if o := last().fetch; o.ChangedSince != 5 || !o.ModSeq || !o.Flags {
		t.Errorf("FETCH options: %+v", o)
	}
	want(r.do("l", "STORE 1 (UNCHANGEDSINCE 3) +FLAGS (\\Seen)"), "l OK [MODIFIED 1] Conditional STORE failed")
	if o := last().store; o.UnchangedSince != 3 {
		t.Errorf("STORE options: %+v", o)
	}
	want(r.do("m", "STORE 1 +FLAGS (\\Seen)"), "m OK STORE completed")
	want(r.do("n", `SEARCH MODSEQ "/flags/\\seen" all 4 MODSEQ 2`), "* SEARCH 1 (MODSEQ 9)", "n OK SEARCH completed")
	if c := last().search; c.ModSeq == nil || c.ModSeq.ModSeq != 4 || c.ModSeq.MetadataType != imap.SearchCriteriaMetadataAll {
		t.Errorf("SEARCH MODSEQ criteria: %+v", c.ModSeq)
	}
	want(r.do("o", "SEARCH RETURN (COUNT) MODSEQ 1"), `* ESEARCH (TAG "o") COUNT 1 MODSEQ 9`, "o OK SEARCH completed")
	for _, cmd := range []string{"FETCH 1 (FLAGS) (CHANGEDSINCE 0)", "FETCH 1 (FLAGS) (VANISHED)", "SELECT INBOX (QRESYNC (1 1))",
		"UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)"} {
		if l := r.do("p", cmd); !strings.HasPrefix(l[len(l)-1], "p BAD") {
			t.Errorf("%s: %q", cmd, l)
		}
	}
}

func TestQResyncParse(t *testing.T) {
	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapQResync: {}}
	addr, last := startExtServer(t, caps)
	r := dialExt(t, addr)
	r.do("a", "LOGIN u p")
	if l := r.do("b", "ENABLE QRESYNC"); l[0] != "* ENABLED QRESYNC" {
		t.Fatalf("ENABLE QRESYNC: %q", l)
	}
	out := strings.Join(r.do("c", "SELECT INBOX (QRESYNC (1 5 1:10 (1:2 3:4)))"), "\n")
	q := last().qresync
	if !strings.Contains(out, "* VANISHED (EARLIER) 3\nc OK [READ-WRITE]") || q == nil || q.UIDValidity != 1 || q.ModSeq != 5 ||
		q.KnownUIDs.String() != "1:10" || q.SeqMatchSeqNums.String() != "1:2" || q.SeqMatchUIDs.String() != "3:4" {
		t.Errorf("SELECT (QRESYNC): %q %+v", out, q)
	}
	r.do("d", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5 VANISHED)")
	if o := last().fetch; !o.Vanished || o.ChangedSince != 5 {
		t.Errorf("UID FETCH (CHANGEDSINCE VANISHED): %+v", o)
	}
	for _, cmd := range []string{"SELECT INBOX (QRESYNC (1 5 1:10 1:10))", "SELECT INBOX (QRESYNC (1))", "FETCH 1 (FLAGS) (CHANGEDSINCE 5 VANISHED)"} {
		if l := r.do("e", cmd); !strings.HasPrefix(l[len(l)-1], "e BAD") {
			t.Errorf("%s: %q", cmd, l)
		}
	}
}

// Without the capabilities the commands are unknown, as before.
func TestExtensionsNotAdvertised(t *testing.T) {
	addr, _ := startExtServer(t, imap.CapSet{imap.CapIMAP4rev1: {}})
	r := dialExt(t, addr)
	r.do("a", "LOGIN u p")
	for _, cmd := range []string{"GETQUOTA \"\"", "SELECT INBOX (CONDSTORE)", "STATUS INBOX (HIGHESTMODSEQ)", "ENABLE CONDSTORE"} {
		l := r.do("b", cmd)
		if last := l[len(l)-1]; cmd == "ENABLE CONDSTORE" && l[0] != "* ENABLED" || cmd != "ENABLE CONDSTORE" && !strings.HasPrefix(last, "b BAD") {
			t.Errorf("%s: %q", cmd, l)
		}
	}
	r2 := dialExt(t, addr)
	if _, err := r2.c.Write([]byte("a ID NIL\r\n")); err != nil {
		t.Fatal(err)
	}
	if l := r2.line(); !strings.HasPrefix(l, "a BAD") {
		t.Errorf("ID without the capability: %q", l)
	}
	if l := r2.line(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("ID without the capability before login: %q", l)
	}
}

// A plain STORE (its flags in a list) does not enable CONDSTORE; one with
// UNCHANGEDSINCE does (RFC 7162 section 3.1). An enabled CONDSTORE puts
// MODSEQ in every FETCH response, which a client that never asked for it
// does not expect.
func TestStoreEnablesCondStoreOnlyWithModifier(t *testing.T) {
	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapCondStore: {}}
	addr, last := startExtServer(t, caps)
	r := dialExt(t, addr)
	r.do("a", "LOGIN u p")
	r.do("b", "SELECT INBOX")
	r.do("c", `STORE 1 +FLAGS (\Seen)`)
	r.do("d", `STORE 1 -FLAGS.SILENT (\Seen \Flagged)`)
	if last().storeCondStore {
		t.Fatal("CONDSTORE enabled by a STORE without modifiers")
	}
	r.do("e", `STORE 1 (UNCHANGEDSINCE 9) +FLAGS (\Seen)`)
	if !last().storeCondStore {
		t.Error("CONDSTORE not enabled by STORE (UNCHANGEDSINCE)")
	}
}
