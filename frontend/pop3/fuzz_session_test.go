package pop3

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"mailcluster/frontend/pool"
)

// runScript runs one session over a script of client input against the
// in-memory fakes and returns the server's output.
func runScript(t testing.TB, mb *fakeMailbox, insecure bool, script []byte) []byte {
	cfg := DefaultConfig()
	cfg.InsecureAuth = insecure
	cfg.ReadAhead = 2
	cfg.ReadAheadMemory = 60 // room for one or two of the fuzz bodies
	cfg.AuthFailureDelay = 0
	cfg.MaxLineLength = 512
	srv := NewServer(cfg, fakeAuth{}, fakeRouter{&pool.Backend{Name: "fake", Client: mb}}, slog.New(slog.DiscardHandler))
	var out bytes.Buffer
	ss := newSession(srv, &scriptConn{r: bytes.NewReader(script), w: &out})
	ss.serve()
	if n := srv.aheadUsed.Load(); n != 0 {
		t.Fatalf("read-ahead budget not released: %d bytes", n)
	}
	return out.Bytes()
}

var fuzzBodies = []string{
	"Subject: one\r\n\r\nbody\r\n.dot line\r\n.\r\n",
	"Subject: two\n\nbare LF\n.x\n",
	"Subject: three\r\n\r\n\xff\xfe 8-bit, no final CRLF",
}

func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"CAPA\r\nUSER u\r\nPASS p\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 1\r\nDELE 1\r\nRSET\r\nDELE 3\r\nNOOP\r\nQUIT\r\n",
		"AUTH PLAIN AHUAcA==\r\nRETR 0\r\nRETR -1\r\nRETR 99999999\r\nDELE 2\r\nDELE 2\r\nLIST 2\r\nQUIT\r\n",
		"AUTH PLAIN\r\nAHUAcA==\r\nLIST 1 2\r\nTOP 1\r\nTOP 1 x\r\n",
		"AUTH\r\nAUTH LOGIN\r\nAUTH PLAIN\r\n*\r\nUSER tmp\r\nPASS p\r\nUSER down\r\nPASS p\r\nUSER off\r\nPASS p\r\n",
		"STAT\r\nRETR 1\r\nPASS x\r\nUSER u\r\nPASS bad\r\nAPOP u x\r\nSTLS\r\nQUIT\r\n",
		"USER u\r\nPASS p\r\nDELE 1\r\nDELE 2\r\nDELE 3\r\n", // dropped: deletes nothing
		"\x00\x00\r\nUSER u\x00\r\nGARBAGE\r\n\r\n  \r\nX\r\n",
		"user u\npass p\nretr 2\nquit\n",
	} {
		f.Add([]byte(s), true)
	}
	f.Add([]byte("USER u\r\nPASS p\r\nCAPA\r\nAUTH PLAIN AHUAcA==\r\n"), false)
	f.Fuzz(func(t *testing.T, script []byte, insecure bool) {
		mb := newFakeMailbox(fuzzBodies...)
		out := runScript(t, mb, insecure, script)
		if !bytes.HasPrefix(out, []byte("+OK ")) {
			t.Fatalf("no greeting: %q", out)
		}
		if bytes.Contains(out, []byte("10.0.0.7")) || bytes.Contains(out, []byte("rpc error")) {
			t.Fatalf("internal error text reached the client: %q", out)
		}
		if len(mb.expunged) > 0 && !strings.Contains(strings.ToUpper(string(script)), "QUIT") {
			t.Fatalf("messages expunged without QUIT: %v", mb.expunged)
		}
		if !insecure && bytes.Contains(out, []byte("Logged in")) {
			t.Fatal("logged in without TLS")
		}
	})
}

func TestScriptBasics(t *testing.T) {
	mb := newFakeMailbox(fuzzBodies...)
	out := string(runScript(t, mb, true, []byte("USER u\r\nPASS p\r\nLIST\r\nRETR 1\r\nTOP 3 0\r\nDELE 2\r\nQUIT\r\n")))
	want := "+OK localhost POP3 ready.\r\n+OK\r\n+OK Logged in, 3 messages (102 octets).\r\n" +
		"+OK 3 messages (102 octets)\r\n1 36\r\n2 25\r\n3 41\r\n.\r\n" +
		"+OK 36 octets\r\nSubject: one\r\n\r\nbody\r\n..dot line\r\n..\r\n.\r\n" +
		"+OK\r\nSubject: three\r\n\r\n.\r\n" +
		"+OK Message 2 marked for deletion.\r\n+OK Logging out.\r\n"
	if out != want {
		t.Fatalf("got\n%q\nwant\n%q", out, want)
	}
	if len(mb.expunged) != 1 || mb.expunged[0] != 3 {
		t.Fatalf("expunged %v", mb.expunged)
	}
	if mb.flags[1]&1 == 0 || mb.flags[5]&1 != 0 {
		t.Fatalf("\\Seen: %v", mb.flags)
	}
}
