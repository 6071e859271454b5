package imap

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

var modseqRe = regexp.MustCompile(`MODSEQ \(?(\d+)\)?`)

// modseqOf returns the number after MODSEQ in a line, or fails.
func modseqOf(t *testing.T, l string) uint64 {
	t.Helper()
	m := modseqRe.FindStringSubmatch(l)
	if m == nil {
		t.Fatalf("no MODSEQ in %q", l)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// fetches returns the distinct untagged FETCH lines of out. Unsolicited
// FETCH responses for this session's own change may follow the solicited
// ones (when the change notification wins the race with the command's own
// resync); they carry UID, so unless uidCmd those are left out.
func fetches(out string, uidCmd bool) []string {
	var l []string
	seen := map[string]bool{}
	for _, s := range strings.Split(out, "\n") {
		if !strings.HasPrefix(s, "* ") || !strings.Contains(s, " FETCH ") || seen[s] {
			continue
		}
		if !uidCmd && strings.Contains(s, "(UID ") {
			continue
		}
		seen[s] = true
		l = append(l, s)
	}
	return l
}

func TestCondStore(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("carl")
	for i := 0; i < 5; i++ {
		deliver(t, st.clients[0], id, testMessage(i))
	}
	_, addr := st.frontend(nil, 0)

	r := dialRaw(t, addr)
	r.send("a LOGIN carl secret\r\nb CAPABILITY\r\n")
	r.expect("a OK")
	if l := r.expect("* CAPABILITY"); !strings.Contains(l, " CONDSTORE") {
		t.Errorf("CONDSTORE not advertised: %q", l)
	}
	r.expect("b OK")

	// SELECT (CONDSTORE): HIGHESTMODSEQ, and CONDSTORE is enabled.
	r.send("c SELECT INBOX (CONDSTORE)\r\n")
	out := r.until("c")
	hl := regexp.MustCompile(`\* OK \[HIGHESTMODSEQ (\d+)\]`).FindStringSubmatch(out)
	if hl == nil || !strings.Contains(out, "c OK [READ-WRITE]") {
		t.Fatalf("SELECT (CONDSTORE):\n%s", out)
	}
	h0, _ := strconv.ParseUint(hl[1], 10, 64)

	// STORE reports MODSEQ once CONDSTORE is enabled.
	r.send("d STORE 2,4 +FLAGS (\\Flagged)\r\n")
	out = r.until("d")
	fl := fetches(out, false)
	if len(fl) != 2 || !strings.HasPrefix(fl[0], "* 2 FETCH (FLAGS (\\Flagged) MODSEQ (") || !strings.HasPrefix(fl[1], "* 4 FETCH (") {
		t.Fatalf("STORE:\n%s", out)
	}
	m2, m4 := modseqOf(t, fl[0]), modseqOf(t, fl[1])
	if m2 <= h0 || m4 <= h0 {
		t.Fatalf("STORE MODSEQs %d %d not above HIGHESTMODSEQ %d", m2, m4, h0)
	}

	// FETCH CHANGEDSINCE: exactly the changed messages, with MODSEQ.
	r.send(fmt.Sprintf("e FETCH 1:* (FLAGS) (CHANGEDSINCE %d)\r\n", h0))
	out = r.until("e")
	fl = fetches(out, false)
	if len(fl) != 2 || fl[0] != fmt.Sprintf("* 2 FETCH (FLAGS (\\Flagged) MODSEQ (%d))", m2) ||
		fl[1] != fmt.Sprintf("* 4 FETCH (FLAGS (\\Flagged) MODSEQ (%d))", m4) {
		t.Fatalf("FETCH CHANGEDSINCE %d:\n%s", h0, out)
	}
	r.send(fmt.Sprintf("e2 UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)\r\n", max(m2, m4)))
	if out = r.until("e2"); len(fetches(out, true)) != 0 {
		t.Fatalf("FETCH CHANGEDSINCE the highest:\n%s", out)
	}
	r.send("e3 FETCH 3 (MODSEQ)\r\n")
	if l := r.line(); l != fmt.Sprintf("* 3 FETCH (MODSEQ (%d))", modseqOf(t, l)) || modseqOf(t, l) > h0 {
		t.Fatalf("FETCH MODSEQ: %q", l)
	}
	r.expect("e3 OK")

	// SEARCH MODSEQ, with the highest MODSEQ of what was found.
	top := max(m2, m4)
	for tag, cmd := range map[string]string{
		"f1": fmt.Sprintf("SEARCH MODSEQ %d", h0+1),
		"f2": fmt.Sprintf(`SEARCH MODSEQ "/flags/\\flagged" all %d`, h0+1),
		"f3": fmt.Sprintf("SEARCH NOT DELETED MODSEQ %d", h0+1),
	} {
		r.send(tag + " " + cmd + "\r\n")
		if l := r.line(); l != fmt.Sprintf("* SEARCH 2 4 (MODSEQ %d)", top) {
			t.Errorf("%s: %q", cmd, l)
		}
		r.expect(tag + " OK")
	}
	r.send(fmt.Sprintf("f4 SEARCH RETURN (ALL COUNT) MODSEQ %d\r\n", h0+1))
	if l := r.line(); l != fmt.Sprintf(`* ESEARCH (TAG "f4") ALL 2,4 COUNT 2 MODSEQ %d`, top) {
		t.Errorf("ESEARCH MODSEQ: %q", l)
	}
	r.expect("f4 OK")
	r.send(fmt.Sprintf("f5 SEARCH MODSEQ %d\r\n", top+1))
	if l := r.line(); l != "* SEARCH" {
		t.Errorf("SEARCH MODSEQ above everything: %q", l)
	}
	r.expect("f5 OK")

	// STORE UNCHANGEDSINCE: 1, 3 and 5 are unchanged since h0 and are
	// stored; 2 and 4 changed and are reported as MODIFIED.
	r.send(fmt.Sprintf("g STORE 1:5 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Seen)\r\n", h0))
	out = r.until("g")
	fl = fetches(out, false)
	if !strings.Contains(out, "g OK [MODIFIED 2,4]") || len(fl) != 3 ||
		!strings.HasPrefix(fl[0], "* 1 FETCH (MODSEQ (") || !strings.HasPrefix(fl[2], "* 5 FETCH (MODSEQ (") {
		t.Fatalf("conditional STORE.SILENT:\n%s", out)
	}
	m5 := modseqOf(t, fl[2])
	r.send("h FETCH 1:5 (FLAGS)\r\n")
	out = r.until("h")
	if strings.Count(out, `\Seen`) != 3 || strings.Contains(out, `2 FETCH (FLAGS (\Flagged \Seen`) {
		t.Fatalf("after the conditional STORE:\n%s", out)
	}
	// By UID: refused ones are named by UID.
	r.send("i UID FETCH 4 (UID)\r\n")
	uid4 := regexp.MustCompile(`UID (\d+)`).FindStringSubmatch(r.expect("* 4 FETCH"))[1]
	r.expect("i OK")
	r.send(fmt.Sprintf("j UID STORE 1:* (UNCHANGEDSINCE %d) -FLAGS (\\Seen)\r\n", m4-1))
	out = r.until("j")
	// Every message changed after m4-1 (2 and 4 at m4, the others later).
	if uid4 != "4" || !strings.Contains(out, "j OK [MODIFIED 1:5]") {
		t.Fatalf("UID STORE UNCHANGEDSINCE:\n%s", out)
	}
	if len(fetches(out, true)) != 0 {
		t.Errorf("UID STORE UNCHANGEDSINCE %d stored something:\n%s", m4-1, out)
	}
	r.send(fmt.Sprintf("k UID STORE 1:* (UNCHANGEDSINCE %d) -FLAGS (\\Seen)\r\n", m5))
	out = r.until("k")
	if !strings.Contains(out, "k OK UID STORE completed") || len(fetches(out, true)) != 5 {
		t.Fatalf("UID STORE UNCHANGEDSINCE the highest:\n%s", out)
	}
	high := uint64(0)
	for _, l := range fetches(out, true) {
		high = max(high, modseqOf(t, l))
	}

	// STATUS HIGHESTMODSEQ agrees.
	r.send("l STATUS INBOX (MESSAGES HIGHESTMODSEQ)\r\n")
	if l := r.line(); l != fmt.Sprintf("* STATUS INBOX (MESSAGES 5 HIGHESTMODSEQ %d)", high) {
		t.Errorf("STATUS HIGHESTMODSEQ: %q (want %d)", l, high)
	}
	r.expect("l OK")

	// A flag change from another session arrives with MODSEQ where
	// CONDSTORE is enabled (ENABLE, then IDLE), and without it elsewhere.
	r2 := dialRaw(t, addr)
	r2.send("a LOGIN carl secret\r\nb ENABLE CONDSTORE\r\n")
	r2.expect("a OK")
	if l := r2.line(); l != "* ENABLED CONDSTORE" {
		t.Errorf("ENABLE CONDSTORE: %q", l)
	}
	r2.expect("b OK")
	r2.send("c EXAMINE INBOX\r\n")
	if out := r2.until("c"); !strings.Contains(out, fmt.Sprintf("* OK [HIGHESTMODSEQ %d]", high)) {
		t.Errorf("EXAMINE:\n%s", out)
	}
	r2.send("d IDLE\r\n")
	r2.expect("+ ")
	r3 := dialRaw(t, addr)
	r3.send("a LOGIN carl secret\r\nb SELECT INBOX\r\n")
	r3.expect("a OK")
	if out := r3.until("b"); !strings.Contains(out, "[HIGHESTMODSEQ ") {
		t.Errorf("SELECT without CONDSTORE lacks HIGHESTMODSEQ:\n%s", out)
	}

	r.send("m STORE 3 +FLAGS (\\Answered)\r\n")
	out = r.until("m")
	m3 := modseqOf(t, fetches(out, false)[0])
	r2.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l := r2.line(); l != fmt.Sprintf("* 3 FETCH (UID 3 FLAGS (\\Answered) MODSEQ (%d))", m3) &&
		l != fmt.Sprintf("* 3 FETCH (FLAGS (\\Answered) MODSEQ (%d))", m3) {
		t.Errorf("unsolicited FETCH in IDLE: %q", l)
	}
	r2.send("DONE\r\n")
	r2.expect("d OK")
	r3.send("c NOOP\r\n")
	out = r3.until("c")
	if fl := fetches(out, true); len(fl) != 1 || strings.Contains(fl[0], "MODSEQ") || !strings.Contains(fl[0], `\Answered`) {
		t.Errorf("unsolicited FETCH without CONDSTORE:\n%s", out)
	}
	// Any CONDSTORE command enables it: FETCH (MODSEQ), then a change.
	r3.send("d FETCH 1 (MODSEQ)\r\n")
	r3.until("d")
	r.send("n STORE 3 -FLAGS (\\Answered)\r\n")
	r.until("n")
	deadline := time.Now().Add(5 * time.Second)
	for {
		r3.send("e NOOP\r\n")
		out = r3.until("e")
		if fl := fetches(out, true); len(fl) > 0 {
			if !strings.Contains(fl[0], "MODSEQ (") {
				t.Errorf("unsolicited FETCH after FETCH (MODSEQ): %q", fl[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no unsolicited FETCH")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A FETCH that sets \Seen reports the MODSEQ of that change.
	r.send("o FETCH 5 (MODSEQ BODY[TEXT])\r\n")
	out = r.until("o")
	if m := regexp.MustCompile(`FLAGS \(\\Seen\) MODSEQ \((\d+)\)\)`).FindStringSubmatch(out); m == nil {
		t.Errorf("FETCH (MODSEQ BODY[TEXT]):\n%s", out)
	} else if n, _ := strconv.ParseUint(m[1], 10, 64); n <= m3 {
		t.Errorf("FETCH (MODSEQ BODY[TEXT]): MODSEQ %d, not after %d:\n%s", n, m3, out)
	}

	// Malformed CONDSTORE arguments: BAD, the session goes on.
	for i, cmd := range []string{
		"FETCH 1 (FLAGS) (CHANGEDSINCE 0)",
		"FETCH 1 (FLAGS) (CHANGEDSINCE)",
		"FETCH 1 (FLAGS) (CHANGEDSINCE 99999999999999999999999)",
		"FETCH 1 (FLAGS) (VANISHED)",
		"STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)",
		"STORE 1 (FOO 1) +FLAGS (\\Seen)",
		"SEARCH MODSEQ",
		`SEARCH MODSEQ "/flags/\\seen" bogus 1`,
		"SELECT INBOX (QRESYNC (1 2))",
		"STATUS INBOX (HIGHESTMODSEQ BOGUS)",
	} {
		tag := fmt.Sprintf("x%d", i)
		r3.send(tag + " " + cmd + "\r\n")
		if l := r3.expect(tag + " "); !strings.HasPrefix(l, tag+" BAD") {
			t.Errorf("%s: %q", cmd, l)
		}
	}
	r3.send("y NOOP\r\n")
	r3.expect("y OK")
}

// go-imap's client drives the same CONDSTORE commands.
func TestCondStoreClient(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("cora")
	for i := 0; i < 3; i++ {
		deliver(t, st.clients[0], id, testMessage(i))
	}
	_, addr := st.frontend(nil, 0)
	c := login(t, addr, "cora")
	if !c.Caps().Has(imap.CapCondStore) {
		t.Fatal("CONDSTORE not advertised")
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{CondStore: true}).Wait()
	if err != nil || sel.HighestModSeq == 0 {
		t.Fatalf("SELECT (CONDSTORE): %+v %v", sel, err)
	}
	if _, err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{Flags: true, ModSeq: true, ChangedSince: sel.HighestModSeq}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].SeqNum != 2 || msgs[0].ModSeq <= sel.HighestModSeq {
		t.Fatalf("FETCH CHANGEDSINCE: %+v %v", msgs, err)
	}
	// A conditional store that fails changes nothing and is still OK.
	if _, err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}},
		&imap.StoreOptions{UnchangedSince: sel.HighestModSeq}).Collect(); err != nil {
		t.Fatal(err)
	}
	msgs, err = c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(msgs) != 1 || len(msgs[0].Flags) != 1 {
		t.Fatalf("after a refused conditional STORE: %+v %v", msgs, err)
	}
	status, err := c.Status("INBOX", &imap.StatusOptions{HighestModSeq: true}).Wait()
	if err != nil || status.HighestModSeq != msgs[0].ModSeq && status.HighestModSeq < sel.HighestModSeq {
		t.Fatalf("STATUS HIGHESTMODSEQ: %+v %v", status, err)
	}
	data, err := c.Search(&imap.SearchCriteria{ModSeq: &imap.SearchCriteriaModSeq{ModSeq: sel.HighestModSeq + 1}}, nil).Wait()
	if err != nil || len(data.AllSeqNums()) != 1 || data.ModSeq == 0 {
		t.Fatalf("SEARCH MODSEQ: %+v %v", data, err)
	}
	var _ *imapclient.Client = c
}
