package imap

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// userWith adds an account like stack.user with extra LDIF attribute lines.
func (st *stack) userWith(uid string, extra ...string) string {
	st.t.Helper()
	st.slapd.AddLDIF(st.t, fmt.Sprintf("dn: uid=%s,%s\nobjectClass: inetOrgPerson\nobjectClass: inetLocalMailRecipient\n"+
		"objectClass: mailclusterAccount\nuid: %s\ncn: %s\nsn: %s\nmail: %s@example.test\nuserPassword: secret\n%s",
		uid, st.tree.PeopleDN, uid, uid, uid, uid, strings.Join(append(extra, ""), "\n")))
	info, err := st.dir.Authenticate(context.Background(), uid, "secret", netipLocal)
	if err != nil {
		st.t.Fatal(err)
	}
	return info.ID
}

func TestID(t *testing.T) {
	st := newStack(t, 1)
	st.user("ida")
	_, addr := st.frontend(nil, 0)

	r := dialRaw(t, addr)
	r.send("a CAPABILITY\r\n")
	if l := r.expect("* CAPABILITY"); !strings.Contains(l, " ID") {
		t.Errorf("ID not advertised before login: %q", l)
	}
	r.expect("a OK")
	// Before authentication: answered, not BYE (Thunderbird and Apple
	// Mail send ID first).
	r.send(`b ID ("name" "Thunderbird" "version" "128.0" "x-unknown" "1")` + "\r\n")
	if l := r.line(); l != `* ID ("name" "mailcluster")` {
		t.Fatalf("ID: %q", l)
	}
	r.expect("b OK")
	r.send("c id nil\r\n")
	if l := r.line(); l != `* ID ("name" "mailcluster")` {
		t.Fatalf("ID NIL: %q", l)
	}
	r.expect("c OK")

	// Hostile input: BAD, and the connection goes on, even before login.
	var pairs []string
	for i := 0; i < 31; i++ {
		pairs = append(pairs, fmt.Sprintf(`"f%d" "v"`, i))
	}
	long := strings.Repeat("x", 1025)
	many := "("
	for i := 0; i < 3000; i++ {
		many += fmt.Sprintf(`"f%d" NIL `, i)
	}
	many += `"last" NIL)`
	for i, args := range []string{
		"(" + strings.Join(pairs, " ") + ")",            // more than 30 pairs
		`("` + strings.Repeat("k", 31) + `" "v")`,       // field over 30 octets
		`("name" "` + long + `")`,                       // value over 1024 octets
		"(\"name\" {1025+}\r\n" + long + ")",            // the same as a literal
		`("name" "a" "NAME" "b")`,                       // repeated field
		`("name")`,                                      // no value
		`"name"`,                                        // not a list
		`(name "a")`,                                    // field not a string
		`("name" "` + strings.Repeat("y", 40000) + `")`, // a huge string
		many, // very many pairs
	} {
		tag := fmt.Sprintf("h%d", i)
		r.send(tag + " ID " + args + "\r\n")
		l := r.expect(tag + " ")
		t.Logf("%s %q", tag, l)
		if !strings.HasPrefix(l, tag+" BAD") {
			t.Errorf("ID %.60q: %q", args, l)
		}
	}
	// Exactly 30 pairs, NIL values and the limits themselves are fine.
	pairs[29] = `"` + strings.Repeat("k", 30) + `" "` + strings.Repeat("v", 1024) + `"`
	pairs[0] = `"name" NIL`
	r.send("d ID (" + strings.Join(pairs[:30], " ") + ")\r\n")
	r.expect("* ID ")
	r.expect("d OK")
	r.send("e NOOP\r\n")
	r.expect("e OK")

	// After login, through go-imap's client.
	c := login(t, addr, "ida")
	if !c.Caps().Has(imap.CapID) {
		t.Error("ID not advertised after login")
	}
	got, err := c.ID(&imap.IDData{Name: "go-imap", Version: "2", OS: "linux"}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if (*got != imap.IDData{Name: "mailcluster"}) {
		t.Errorf("ID after login: %+v", got)
	}
}

func TestQuota(t *testing.T) {
	st := newStack(t, 1)
	qid := st.userWith("quinn", "mailclusterQuotaBytes: 10485760", "mailclusterQuotaMessages: 100")
	st.user("free")
	sid := st.userWith("sam", "mailclusterQuotaBytes: 5000") // storage only
	var size int64
	for i := 0; i < 3; i++ {
		deliver(t, st.clients[0], qid, testMessage(i))
		size += int64(len(testMessage(i)))
	}
	deliver(t, st.clients[0], sid, testMessage(7))
	_, addr := st.frontend(nil, 0)

	// The backend's usage is the stored mail.
	used, err := st.clients[0].GetQuota(context.Background(), &mailboxv1.GetQuotaRequest{AccountId: qid})
	if err != nil {
		t.Fatal(err)
	}
	if used.StorageBytes != size || used.Messages != 3 {
		t.Fatalf("backend usage %d bytes %d messages, stored %d bytes 3 messages", used.StorageBytes, used.Messages, size)
	}
	kib := (size + 1023) / 1024

	r := dialRaw(t, addr)
	r.send("a LOGIN quinn secret\r\n")
	r.expect("a OK")
	r.send("b CAPABILITY\r\n")
	if l := r.expect("* CAPABILITY"); !strings.Contains(l, " QUOTA QUOTA=RES-MESSAGE QUOTA=RES-STORAGE") {
		t.Errorf("QUOTA capabilities: %q", l)
	}
	r.expect("b OK")
	r.send("c GETQUOTAROOT inbox\r\n")
	out := r.until("c")
	want := fmt.Sprintf("* QUOTAROOT INBOX \"\"\n* QUOTA \"\" (MESSAGE 3 100 STORAGE %d 10240)\nc OK", kib)
	if !strings.HasPrefix(out, want) {
		t.Errorf("GETQUOTAROOT:\n%s\nwant\n%s", out, want)
	}
	r.send("d GETQUOTA \"\"\r\n")
	if l := r.line(); l != fmt.Sprintf("* QUOTA \"\" (MESSAGE 3 100 STORAGE %d 10240)", kib) {
		t.Errorf("GETQUOTA: %q", l)
	}
	r.expect("d OK")
	for tag, cmd := range map[string]string{
		"e": `GETQUOTA "user.quinn"`, "f": "GETQUOTAROOT Nowhere", "g": `GETQUOTAROOT "a/../b"`,
	} {
		r.send(tag + " " + cmd + "\r\n")
		if l := r.line(); !strings.HasPrefix(l, tag+" NO [NONEXISTENT]") {
			t.Errorf("%s: %q", cmd, l)
		}
	}
	r.send("h GETQUOTAROOT\r\n")
	r.expect("h BAD")

	// Before login: refused, the connection goes on.
	r2 := dialRaw(t, addr)
	r2.send("a GETQUOTA \"\"\r\nb NOOP\r\n")
	r2.expect("a BAD")
	r2.expect("b OK")

	// go-imap's client agrees; a new message shows at once.
	c := login(t, addr, "quinn")
	deliver(t, st.clients[0], qid, testMessage(3))
	size += int64(len(testMessage(3)))
	roots, err := c.GetQuotaRoot("INBOX").Wait()
	if err != nil || len(roots) != 1 {
		t.Fatalf("GetQuotaRoot: %v %v", roots, err)
	}
	res := roots[0].Resources
	if res[imap.QuotaResourceStorage].Usage != (size+1023)/1024 || res[imap.QuotaResourceStorage].Limit != 10240 ||
		res[imap.QuotaResourceMessage].Usage != 4 || res[imap.QuotaResourceMessage].Limit != 100 {
		t.Errorf("GetQuotaRoot: %+v", roots[0])
	}

	// Storage only: no MESSAGE resource; 5000 octets is 4 KiB of limit.
	r3 := dialRaw(t, addr)
	r3.send("a LOGIN sam secret\r\nb GETQUOTA \"\"\r\n")
	r3.expect("a OK")
	if l := r3.line(); l != fmt.Sprintf("* QUOTA \"\" (STORAGE %d 4)", (len(testMessage(7))+1023)/1024) {
		t.Errorf("storage-only GETQUOTA: %q", l)
	}
	r3.expect("b OK")

	// No limits: no quota root.
	r4 := dialRaw(t, addr)
	r4.send("a LOGIN free secret\r\nb GETQUOTAROOT INBOX\r\nc GETQUOTA \"\"\r\n")
	r4.expect("a OK")
	if out := r4.until("b"); out != "* QUOTAROOT INBOX\nb OK GETQUOTAROOT completed\n" {
		t.Errorf("GETQUOTAROOT without quota: %q", out)
	}
	if l := r4.line(); !strings.HasPrefix(l, "c NO [NONEXISTENT]") {
		t.Errorf("GETQUOTA without quota: %q", l)
	}
}
