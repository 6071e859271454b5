package imap

import (
	"net"
	"os/exec"
	"strings"
	"testing"
)

// Python's imaplib, a real IMAP4rev1 client (offlineimap and many scripts
// build on it), runs a typical session: LIST, SELECT, APPEND, UID FETCH of
// header fields, UID SEARCH, RFC822, STORE, EXPUNGE, COPY, STATUS, CLOSE.
func TestPythonImaplib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	st := newStack(t, 1)
	id := st.user("olga")
	deliver(t, st.clients[0], id, testMessage(1))
	_, addr := st.frontend(nil, 0)
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(py, "testdata/imaplib_client.py", host, port, "olga", "secret").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
}
