package imap

import (
	"context"
	"fmt"
	mathrand "math/rand"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// cachedAnswers is the message cache's count of answers of kind.
func cachedAnswers(t *testing.T, srv *Server, kind string) float64 {
	return counterValue(t, srv.metrics.cached.WithLabelValues(kind))
}

var fetchLine = regexp.MustCompile(`^\* \d+ FETCH `)

// byUID runs a FETCH of every message on r and returns its responses
// without their sequence numbers, sorted: comparable between sessions.
// Items must include RFC822.SIZE, which tells the responses apart from
// unsolicited flag updates.
func (r *raw) byUID(tag, items string) []string {
	r.t.Helper()
	r.send(tag + " UID FETCH 1:* " + items + "\r\n")
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(r.until(tag), "\n"), "\n") {
		if fetchLine.MatchString(l) {
			if strings.Contains(l, "RFC822.SIZE") {
				out = append(out, fetchLine.ReplaceAllString(l, "* FETCH "))
			}
		} else if !strings.HasPrefix(l, "* ") && !strings.HasPrefix(l, tag+" OK") {
			r.t.Fatalf("%s: %q", tag, l)
		}
	}
	slices.Sort(out)
	return out
}

// noopUntil sends NOOP until its untagged responses contain want.
func (r *raw) noopUntil(want string) {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		r.send(fmt.Sprintf("n%d NOOP\r\n", i))
		if strings.Contains(r.until(fmt.Sprintf("n%d", i)), want) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no %q after NOOP", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCurrent waits until every mailbox state of srv may answer from its
// cache: no resynchronisation (from a Watch event) is running or pending.
func waitCurrent(t *testing.T, srv *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		srv.mu.Lock()
		ok := true
		for _, mb := range srv.mailboxes {
			ok = ok && mb.current()
		}
		srv.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("mailbox state not current")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func rawLogin(t *testing.T, addr, user string) *raw {
	t.Helper()
	r := dialRaw(t, addr)
	r.send("a LOGIN " + user + " secret\r\nb SELECT INBOX\r\n")
	r.expect("a OK")
	r.expect("b OK")
	return r
}

// TestMessageCacheFetch follows one mailbox through every kind of change
// and checks that the frontend with the message cache answers FETCH from
// it, and exactly as a frontend without the cache does: its own STOREs,
// another session's on the same frontend, another frontend's (through the
// Watch stream), \Seen set by a body read, EXPUNGE and a new delivery.
func TestMessageCacheFetch(t *testing.T) {
	st := newStack(t, 1)
	acct := st.user("cache")
	for i := 0; i < 12; i++ {
		deliver(t, st.clients[0], acct, testMessage(i))
	}
	srv, addr := st.frontend(nil, 0)
	_, offAddr := st.frontend(func(c *Config) { c.MessageCache = 0 }, 0)
	a := rawLogin(t, addr, "cache")    // cached frontend
	b := rawLogin(t, addr, "cache")    // a second session there
	o := rawLogin(t, offAddr, "cache") // the other frontend, no cache
	const items = "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"
	same := func(step string) {
		t.Helper()
		waitCurrent(t, srv)
		before := cachedAnswers(t, srv, "fetch")
		got, want := a.byUID("f", items), o.byUID("g", items)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: cached frontend:\n%s\nwithout cache:\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if n := cachedAnswers(t, srv, "fetch") - before; int(n) != len(got) {
			t.Fatalf("%s: %v of %d messages answered from the cache", step, n, len(got))
		}
	}
	// The first FETCH fills the cache, the second is answered from it.
	a.send("x FETCH 1:* " + items + "\r\n")
	a.expect("x OK")
	same("filled")

	a.send("s STORE 3 +FLAGS (\\Flagged)\r\n")
	a.expect("s OK")
	same("own STORE")

	b.send("s STORE 4 +FLAGS (\\Answered $Work)\r\n")
	b.expect("s OK")
	same("STORE of another session")

	o.send("s STORE 5 +FLAGS (\\Seen $Later)\r\n")
	o.expect("s OK")
	a.noopUntil("$Later")
	same("STORE through another frontend")

	a.send("r FETCH 6 BODY[]\r\n")
	if l := a.until("r"); !strings.Contains(l, `\Seen`) {
		t.Fatalf("BODY[] did not report \\Seen: %s", l)
	}
	same("BODY[] set \\Seen")

	o.send("d STORE 7 +FLAGS (\\Deleted)\r\ne EXPUNGE\r\n")
	o.until("e")
	a.noopUntil("* 7 EXPUNGE")
	same("EXPUNGE through another frontend")

	deliver(t, st.clients[0], acct, testMessage(99))
	a.noopUntil("* 12 EXISTS")
	o.noopUntil("* 12 EXISTS")
	a.send("y FETCH 12 (FLAGS)\r\n")
	a.expect("y OK")
	// The new message came with Changes (flags only): the first FETCH with
	// its size reads the backend, every later one the cache.
	a.send("z FETCH 1:* " + items + "\r\n")
	a.expect("z OK")
	same("delivery")

	// CHANGEDSINCE answers from the cache too: only messages changed after.
	a.send("c1 ENABLE CONDSTORE\r\n")
	a.expect("c1 OK")
	a.send("c2 FETCH 1:* (FLAGS) (CHANGEDSINCE 1)\r\n")
	all := a.until("c2")
	a.send("c3 STORE 1 +FLAGS.SILENT (\\Draft)\r\n")
	modseq := regexp.MustCompile(`MODSEQ \((\d+)\)`).FindStringSubmatch(a.until("c3"))
	if modseq == nil {
		t.Fatal("no MODSEQ from STORE with CONDSTORE")
	}
	before := cachedAnswers(t, srv, "fetch")
	a.send(fmt.Sprintf("c4 FETCH 1:* (FLAGS) (CHANGEDSINCE %d)\r\n", mustUint(t, modseq[1])-1))
	since := a.until("c4")
	if strings.Count(since, "FETCH (") != 1 || !strings.Contains(since, `* 1 FETCH (MODSEQ (`+modseq[1]+`) FLAGS (\Draft))`) &&
		!strings.Contains(since, `* 1 FETCH (FLAGS (\Draft) MODSEQ (`+modseq[1]+`))`) {
		t.Fatalf("CHANGEDSINCE: %s (all: %s)", since, all)
	}
	if cachedAnswers(t, srv, "fetch") == before {
		t.Fatal("CHANGEDSINCE was not answered from the cache")
	}
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	var n uint64
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMessageCacheSearch compares the SEARCHes the cache answers with the
// backend's answers, and checks that the others still go to the backend.
func TestMessageCacheSearch(t *testing.T) {
	st := newStack(t, 1)
	acct := st.user("search")
	for i := 0; i < 10; i++ {
		msg := testMessage(i)
		if i%3 == 0 {
			msg = append(msg, strings.Repeat("longer line of text\r\n", 20)...)
		}
		deliver(t, st.clients[0], acct, msg)
	}
	srv, addr := st.frontend(nil, 0)
	_, offAddr := st.frontend(func(c *Config) { c.MessageCache = 0 }, 0)
	a := rawLogin(t, addr, "search")
	o := rawLogin(t, offAddr, "search")
	a.send("e ENABLE CONDSTORE\r\ns1 STORE 1:3 +FLAGS (\\Seen)\r\ns2 STORE 2,5 +FLAGS (\\Flagged $Work)\r\ns3 STORE 8 +FLAGS (\\Deleted \\Answered)\r\n")
	a.until("s3")
	a.send("f FETCH 1:* (FLAGS RFC822.SIZE)\r\n") // fills the cache
	a.expect("f OK")
	o.noopUntil("* 8 FETCH")
	today := time.Now().UTC().Format("2-Jan-2006")
	local := []string{
		"UNSEEN", "SEEN", "FLAGGED", "NOT DELETED", "OR SEEN FLAGGED", "KEYWORD $Work", "UNKEYWORD $Work",
		"KEYWORD $Absent", "LARGER 400", "SMALLER 400", "SINCE " + today, "BEFORE " + today, "ON " + today,
		"UID 3:8", "2:5 UNSEEN", "ALL", "NOT (UID 1:3 SEEN)", "ANSWERED DELETED", "UNDRAFT", "MODSEQ 1",
		"RETURN (MIN MAX COUNT) UNSEEN", "UID SEARCH OR KEYWORD $Work LARGER 400",
	}
	for i, q := range local {
		cmd := "SEARCH " + q
		if strings.HasPrefix(q, "UID ") && strings.Contains(q, "SEARCH") {
			cmd = q
		}
		before := cachedAnswers(t, srv, "search")
		tag := fmt.Sprintf("q%d", i)
		a.send(tag + " " + cmd + "\r\n")
		o.send(tag + " " + cmd + "\r\n")
		got, want := a.until(tag), o.until(tag)
		if got != want {
			t.Errorf("%s: cached %q, backend %q", cmd, got, want)
		}
		if cachedAnswers(t, srv, "search") != before+1 {
			t.Errorf("%s was not answered from the cache", cmd)
		}
	}
	for i, q := range []string{"SUBJECT \"message 3\"", "BODY number", "SENTSINCE 1-Jan-2006", "HEADER Message-ID m4"} {
		before := cachedAnswers(t, srv, "search")
		tag := fmt.Sprintf("r%d", i)
		a.send(tag + " SEARCH " + q + "\r\n")
		o.send(tag + " SEARCH " + q + "\r\n")
		if got, want := a.until(tag), o.until(tag); got != want || !strings.Contains(got, "* SEARCH ") {
			t.Errorf("%s: cached frontend %q, other %q", q, got, want)
		}
		if cachedAnswers(t, srv, "search") != before {
			t.Errorf("%s was answered from the cache", q)
		}
	}
}

// TestMessageCacheLimit: a mailbox whose entries do not fit in
// imap-message-cache has none, one that outgrows it loses them, and
// FETCH and SEARCH answer right from the backend either way; the memory is
// given back when the mailbox is no longer selected.
func TestMessageCacheLimit(t *testing.T) {
	st := newStack(t, 1)
	acct := st.user("limit")
	for i := 0; i < 8; i++ {
		deliver(t, st.clients[0], acct, testMessage(i))
	}
	const budget = 9*metaSlot + 50 // 8 entries and one more, no ENVELOPEs
	srv, addr := st.frontend(func(c *Config) { c.MessageCache = budget }, 0)
	_, offAddr := st.frontend(func(c *Config) { c.MessageCache = 0 }, 0)
	a := rawLogin(t, addr, "limit")
	o := rawLogin(t, offAddr, "limit")
	const items = "(UID FLAGS RFC822.SIZE)"
	check := func(step string, n int) {
		t.Helper()
		if got, want := a.byUID("f", items), o.byUID("g", items); !slices.Equal(got, want) || len(got) != n {
			t.Fatalf("%s:\n%s\nwant %d:\n%s", step, strings.Join(got, "\n"), n, strings.Join(want, "\n"))
		}
	}
	check("filling", 8)
	waitCurrent(t, srv)
	check("cached", 8)
	if n := cachedAnswers(t, srv, "fetch"); n != 8 {
		t.Errorf("%v messages answered from the cache, want 8", n)
	}
	if left := srv.metaLeft.Load(); left != budget-8*metaSlot {
		t.Errorf("%d bytes left, want %d", left, budget-8*metaSlot)
	}
	// Two more messages do not fit: the cache of the mailbox goes.
	deliver(t, st.clients[0], acct, testMessage(8))
	deliver(t, st.clients[0], acct, testMessage(9))
	a.noopUntil("* 10 EXISTS")
	o.noopUntil("* 10 EXISTS")
	check("outgrown", 10)
	waitCurrent(t, srv)
	check("outgrown, again", 10)
	a.send("s SEARCH UNSEEN\r\n")
	o.send("s SEARCH UNSEEN\r\n")
	if got, want := a.until("s"), o.until("s"); got != want {
		t.Errorf("SEARCH %q, want %q", got, want)
	}
	if n := cachedAnswers(t, srv, "fetch"); n != 8 || cachedAnswers(t, srv, "search") != 0 {
		t.Errorf("answered from the cache after it was outgrown: %v messages, %v searches", n-8, cachedAnswers(t, srv, "search"))
	}
	if left := srv.metaLeft.Load(); left != budget {
		t.Errorf("%d bytes left, want all %d", left, budget)
	}
	// A smaller mailbox fits, and gives its memory back on UNSELECT.
	a.send("c CREATE Small\r\nd COPY 1:3 Small\r\ne SELECT Small\r\nf FETCH 1:* (FLAGS)\r\n")
	a.until("f")
	if left := srv.metaLeft.Load(); left != budget-3*metaSlot {
		t.Errorf("Small selected: %d bytes left, want %d", left, budget-3*metaSlot)
	}
	a.send("u UNSELECT\r\n")
	a.until("u")
	if left := srv.metaLeft.Load(); left != budget {
		t.Errorf("after UNSELECT %d bytes free, want %d", left, budget)
	}
}

// TestMatchLocal checks the evaluation of the keys the cache answers
// against one message, and the keys it leaves to the backend.
func TestMatchLocal(t *testing.T) {
	e := &msgMeta{sys: uint32(mailboxv1.Flag_FLAG_SEEN), kw: []string{"$Work"}, modseq: 7, size: 500, date: 1000, full: true}
	flag := func(op mailboxv1.SearchKey_Op, bit mailboxv1.Flag, kw string) *mailboxv1.SearchKey {
		return &mailboxv1.SearchKey{Op: op, Number: uint64(bit), Text: kw}
	}
	for _, c := range []struct {
		key  *mailboxv1.SearchKey
		want bool
	}{
		{flag(mailboxv1.SearchKey_OP_FLAG, mailboxv1.Flag_FLAG_SEEN, ""), true},
		{flag(mailboxv1.SearchKey_OP_NO_FLAG, mailboxv1.Flag_FLAG_SEEN, ""), false},
		{flag(mailboxv1.SearchKey_OP_FLAG, mailboxv1.Flag_FLAG_FLAGGED, ""), false},
		{flag(mailboxv1.SearchKey_OP_FLAG, 0, "$Work"), true},
		{flag(mailboxv1.SearchKey_OP_FLAG, 0, "$work"), false}, // as the backend: exact
		{&mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_BEFORE, Time: 1000}, false},
		{&mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_SINCE, Time: 1000}, true},
		{&mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_LARGER, Number: 500}, false},
		{&mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_SMALLER, Number: 501}, true},
		{&mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_MODSEQ, Number: 7}, true},
		{&mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_MODSEQ, Number: 8}, false},
		{&mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_UID, Uids: &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: 3, End: 4}}}}, true},
		{&mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_NOT, Children: []*mailboxv1.SearchKey{{Op: mailboxv1.SearchKey_OP_ALL}}}, false},
		{&mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_OR, Children: []*mailboxv1.SearchKey{
			flag(mailboxv1.SearchKey_OP_FLAG, mailboxv1.Flag_FLAG_DRAFT, ""), flag(mailboxv1.SearchKey_OP_FLAG, 0, "$Work")}}, true},
	} {
		if ok, _ := localKey(c.key); !ok {
			t.Errorf("%v: not local", c.key)
			continue
		}
		if got := matchLocal(c.key, 4, e); got != c.want {
			t.Errorf("%v: %v, want %v", c.key, got, c.want)
		}
	}
	for _, k := range []*mailboxv1.SearchKey{
		{Op: mailboxv1.SearchKey_OP_HEADER, Field: "Subject", Text: "x"},
		{Op: mailboxv1.SearchKey_OP_BODY, Text: "x"},
		{Op: mailboxv1.SearchKey_OP_SENT_SINCE, Time: 1},
		{Op: mailboxv1.SearchKey_OP_UID, Uids: &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: 3, End: 0}}}},
		{Op: mailboxv1.SearchKey_OP_FLAG, Number: 64},
		{Op: mailboxv1.SearchKey_OP_AND, Children: []*mailboxv1.SearchKey{{Op: mailboxv1.SearchKey_OP_ALL}, {Op: mailboxv1.SearchKey_OP_TEXT, Text: "x"}}},
		{Op: mailboxv1.SearchKey_OP_FLAG}, // neither a system flag nor a keyword
		{Op: mailboxv1.SearchKey_OP_OR, Children: make([]*mailboxv1.SearchKey, maxLocalKeys+1)},
		{Op: mailboxv1.SearchKey_OP_UID, Uids: &mailboxv1.UIDSet{Ranges: make([]*mailboxv1.UIDRange, maxLocalRanges+1)}},
		{Op: mailboxv1.SearchKey_OP_AND}, // no children
		wideTree(6, 2),                   // 63 keys, each node with 2 children
		{Op: mailboxv1.SearchKey_OP_AND, Children: []*mailboxv1.SearchKey{uidKey(20), uidKey(20)}}, // 40 ranges in all
	} {
		if ok, _ := localKey(k); ok {
			t.Errorf("%v: local", k)
		}
	}
}

// wideTree is a tree of ORs depth levels deep, each with width children,
// of flag keys.
func wideTree(depth, width int) *mailboxv1.SearchKey {
	if depth == 1 {
		return &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_FLAG, Number: uint64(mailboxv1.Flag_FLAG_SEEN)}
	}
	k := &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_OR}
	for range width {
		k.Children = append(k.Children, wideTree(depth-1, width))
	}
	return k
}

// uidKey is a UID key of n ranges.
func uidKey(n int) *mailboxv1.SearchKey {
	k := &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_UID, Uids: &mailboxv1.UIDSet{}}
	for i := range n {
		k.Uids.Ranges = append(k.Uids.Ranges, &mailboxv1.UIDRange{Start: uint32(2*i + 1), End: uint32(2*i + 1)})
	}
	return k
}

// selectedState returns the shared state of the only mailbox selected on
// srv.
func selectedState(t *testing.T, srv *Server) *mailboxState {
	t.Helper()
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.mailboxes) != 1 {
		t.Fatalf("%d mailboxes selected, want 1", len(srv.mailboxes))
	}
	for _, mb := range srv.mailboxes {
		return mb
	}
	return nil
}

// A state whose resynchronisation failed does not answer from its cache
// until one succeeds; rows fetched before a change the state applied
// without a cache do not make one (they would never be corrected).
func TestMessageCacheStaleness(t *testing.T) {
	st := newStack(t, 1)
	acct := st.user("stale")
	for i := 0; i < 4; i++ {
		deliver(t, st.clients[0], acct, testMessage(i))
	}
	srv, addr := st.frontend(nil, 0)
	a := rawLogin(t, addr, "stale")
	a.send("f FETCH 1:* (FLAGS)\r\n")
	a.until("f")
	mb := selectedState(t, srv)
	waitCurrent(t, srv)

	dead, cancel := context.WithCancel(context.Background())
	cancel()
	if err := mb.sync(dead, nil, nil); err == nil {
		t.Fatal("sync with a cancelled context succeeded")
	}
	if mb.current() {
		t.Fatal("current after a failed sync")
	}
	a.send("s SEARCH UNSEEN\r\n")
	if l := a.until("s"); !strings.Contains(l, "* SEARCH 1 2 3 4") || cachedAnswers(t, srv, "search") != 0 {
		t.Fatalf("SEARCH after a failed sync: %q, %v from the cache", l, cachedAnswers(t, srv, "search"))
	}
	if err := mb.sync(context.Background(), nil, nil); err != nil {
		t.Fatal(err)
	}
	if !mb.current() {
		t.Fatal("not current after a good sync")
	}

	// Rows of uid 2 as a Fetch read them before a change was applied
	// while the state had no cache.
	old := []*mailboxv1.MessageMeta{{Uid: 2, Flags: &mailboxv1.Flags{}, Modseq: 1, Size: 10, InternalDate: 1}}
	mb.mu.Lock()
	mb.dropMetaLocked()
	mb.mu.Unlock()
	gen := mb.fetchGen()
	mb.apply(&mailboxv1.UIDSet{}, []*mailboxv1.MessageMeta{{Uid: 2, Flags: &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_FLAGGED)}, Modseq: 1 << 40}}, 1<<40, nil, nil)
	mb.noteRows(gen, old, true, nil)
	mb.mu.Lock()
	made := mb.meta != nil
	mb.mu.Unlock()
	if made {
		t.Fatal("rows older than an unrecorded change made a cache")
	}
	mb.noteRows(mb.fetchGen(), old, true, nil)
	mb.mu.Lock()
	made = mb.meta != nil && mb.meta[1].known
	mb.mu.Unlock()
	if !made {
		t.Fatal("rows fetched after the change made no cache")
	}
}

// A command waits a little for a resynchronisation in progress, and then
// answers from the cache; one that takes longer leaves it to the backend.
func TestMessageCacheWaitsForSync(t *testing.T) {
	st := newStack(t, 1)
	deliver(t, st.clients[0], st.user("waiter"), testMessage(1))
	srv, addr := st.frontend(nil, 0)
	rawLogin(t, addr, "waiter")
	mb := selectedState(t, srv)
	waitCurrent(t, srv)
	begin := func() chan struct{} {
		mb.kickMu.Lock()
		defer mb.kickMu.Unlock()
		mb.running, mb.synced = true, make(chan struct{})
		return mb.synced
	}
	end := func(synced chan struct{}) {
		mb.kickMu.Lock()
		defer mb.kickMu.Unlock()
		mb.running = false
		close(synced)
	}
	defer func(d time.Duration) { syncWait = d }(syncWait)
	syncWait = time.Minute
	synced := begin()
	go func() {
		time.Sleep(5 * time.Millisecond)
		end(synced)
	}()
	if !mb.current() {
		t.Fatal("not current after a short sync")
	}
	syncWait = time.Millisecond
	synced = begin()
	if mb.current() {
		t.Fatal("current while a sync runs")
	}
	end(synced)
}

// Many sessions on two frontends with the cache and two backends change
// flags, expunge, append and read at once; afterwards each cached
// frontend's answers to FETCH and SEARCH become those of a frontend
// without a cache (a stale entry would stay stale: nothing corrects it).
func TestMessageCacheUnderConcurrentChanges(t *testing.T) {
	st := newStack(t, 2)
	acct := st.user("busy")
	for i := 0; i < 30; i++ {
		deliver(t, st.clients[i%2], acct, testMessage(i))
	}
	srvA, addrA := st.frontend(nil, 0)
	srvB, addrB := st.frontend(nil, 1)
	_, addrO := st.frontend(func(c *Config) { c.MessageCache = 0 }, 0)
	flags := []imap.Flag{imap.FlagSeen, imap.FlagFlagged, imap.FlagDeleted, "$K1"}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		addr := addrA
		if w%2 == 1 {
			addr = addrB
		}
		c := login(t, addr, "busy")
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := mathrand.New(mathrand.NewSource(int64(w)))
			for i := 0; i < 60; i++ {
				mbox := c.Mailbox()
				if mbox == nil {
					t.Errorf("worker %d, step %d: no mailbox selected", w, i)
					return
				}
				n := mbox.NumMessages
				var err error
				op := rng.Intn(10)
				switch {
				case n == 0 || op == 0:
					msg := testMessage(5000 + 100*w + i)
					cmd := c.Append("INBOX", int64(len(msg)), nil)
					cmd.Write(msg)
					cmd.Close()
					_, err = cmd.Wait()
				case op == 1:
					_, err = c.Expunge().Collect()
				case op <= 5:
					sop := imap.StoreFlagsAdd
					if rng.Intn(2) == 0 {
						sop = imap.StoreFlagsDel
					}
					f := flags[rng.Intn(len(flags))]
					if f == imap.FlagDeleted && sop == imap.StoreFlagsAdd && rng.Intn(3) != 0 {
						f = imap.FlagSeen // fewer expunges, so that messages stay
					}
					err = c.Store(imap.SeqSetNum(uint32(rng.Intn(int(n)))+1), &imap.StoreFlags{Op: sop, Flags: []imap.Flag{f}}, nil).Close()
				case op <= 7:
					_, err = c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true}).Collect()
				case op == 8:
					_, err = c.Fetch(imap.SeqSetNum(uint32(rng.Intn(int(n)))+1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
				default:
					_, err = c.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
				}
				if err != nil && !strings.Contains(err.Error(), "EXPUNGEISSUED") { // a body read of a message expunged meanwhile
					t.Errorf("worker %d, step %d (op %d): %v", w, i, op, err)
					return
				}
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10; i++ {
			deliver(t, st.clients[i%2], acct, testMessage(9000+i))
		}
	}()
	wg.Wait()

	a, b, o := rawLogin(t, addrA, "busy"), rawLogin(t, addrB, "busy"), rawLogin(t, addrO, "busy")
	const items = "(UID FLAGS RFC822.SIZE)"
	deadline := time.Now().Add(10 * time.Second)
	for round := 0; ; round++ {
		waitCurrent(t, srvA)
		waitCurrent(t, srvB)
		for _, r := range []*raw{a, b, o} {
			r.send(fmt.Sprintf("n%d NOOP\r\n", round))
			r.until(fmt.Sprintf("n%d", round))
		}
		want := o.byUID("w", items)
		gotA, gotB := a.byUID("x", items), b.byUID("y", items)
		var search [3]string
		for i, r := range []*raw{a, b, o} {
			r.send("s UID SEARCH UNSEEN\r\n")
			search[i] = strings.SplitN(r.until("s"), "\n", 2)[0]
		}
		if slices.Equal(gotA, want) && slices.Equal(gotB, want) && search[0] == search[2] && search[1] == search[2] {
			if cachedAnswers(t, srvA, "fetch") == 0 || cachedAnswers(t, srvB, "fetch") == 0 {
				t.Fatal("the cache answered nothing")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the changes:\nfrontend A:\n%s\nfrontend B:\n%s\nwithout cache:\n%s\nSEARCH %q",
				strings.Join(gotA, "\n"), strings.Join(gotB, "\n"), strings.Join(want, "\n"), search)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
