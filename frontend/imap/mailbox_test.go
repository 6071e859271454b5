package imap

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func TestMailboxCommands(t *testing.T) {
	st := newStack(t, 1)
	st.user("carol")
	_, addr := st.frontend(nil, 0)
	c := login(t, addr, "carol")

	if err := c.Create("Projects/2026/Q1", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Projects", nil).Wait(); err == nil {
		t.Fatal("CREATE of an existing mailbox succeeded")
	} else if e, ok := err.(*imap.Error); !ok || e.Code != imap.ResponseCodeAlreadyExists {
		t.Fatalf("CREATE existing: %v", err)
	}
	if err := c.Create("Ärger", nil).Wait(); err != nil { // modified UTF-7 on the wire
		t.Fatal(err)
	}
	if err := c.Create("Stuff", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrFlagged}}).Wait(); err != nil {
		t.Fatal(err)
	}
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string][]imap.MailboxAttr{}
	for _, b := range boxes {
		attrs[b.Mailbox] = b.Attrs
	}
	for _, want := range []string{"INBOX", "Sent", "Trash", "Drafts", "Projects", "Projects/2026", "Projects/2026/Q1", "Ärger", "Stuff"} {
		if _, ok := attrs[want]; !ok {
			t.Errorf("LIST lacks %q (have %v)", want, attrs)
		}
	}
	if !hasAttr(attrs["Sent"], imap.MailboxAttrSent) || !hasAttr(attrs["Projects"], imap.MailboxAttrHasChildren) || !hasAttr(attrs["Stuff"], imap.MailboxAttrFlagged) {
		t.Errorf("attributes: %v", attrs)
	}
	top, err := c.List("", "%", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range top {
		if b.Mailbox == "Projects/2026" {
			t.Errorf("%% matched %q", b.Mailbox)
		}
	}

	// LIST-STATUS, STATUS=SIZE.
	status, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true, Size: true}).Wait()
	if err != nil || *status.NumMessages != 0 || status.UIDNext != 1 {
		t.Fatalf("STATUS: %+v %v", status, err)
	}
	ls, err := c.List("", "INBOX", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true}}).Collect()
	if err != nil || len(ls) != 1 || ls[0].Status == nil {
		t.Fatalf("LIST RETURN (STATUS): %+v %v", ls, err)
	}

	if err := c.Rename("Projects/2026/Q1", "Projects/2026/Q2", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Projects/2026/Q2").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Nope").Wait(); err == nil {
		t.Fatal("DELETE of a missing mailbox succeeded")
	} else if e := err.(*imap.Error); e.Code != imap.ResponseCodeNonExistent {
		t.Fatalf("DELETE missing: %v", err)
	}
	if err := c.Subscribe("Stuff").Wait(); err != nil {
		t.Fatal(err)
	}
	subs, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range subs {
		found = found || b.Mailbox == "Stuff"
	}
	if !found {
		t.Errorf("LIST (SUBSCRIBED) = %+v", subs)
	}
	if err := c.Unsubscribe("Stuff").Wait(); err != nil {
		t.Fatal(err)
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
		t.Fatalf("NAMESPACE: %+v %v", ns, err)
	}

	// Bad names are refused cleanly.
	for _, name := range []string{"a/../b", "a/%", "x*", "a//b", string(bytes.Repeat([]byte("n"), 600))} {
		err := c.Create(name, nil).Wait()
		if e, ok := err.(*imap.Error); !ok || e.Type != imap.StatusResponseTypeNo {
			t.Errorf("CREATE %q: %v", name, err)
		}
	}
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, x := range attrs {
		if x == a {
			return true
		}
	}
	return false
}

func TestAppendCopyMoveExpunge(t *testing.T) {
	st := newStack(t, 1)
	st.user("dave")
	_, addr := st.frontend(nil, 0)
	c := login(t, addr, "dave")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	// APPEND to the selected mailbox: APPENDUID, and EXISTS before OK.
	date := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	for i := 1; i <= 4; i++ {
		msg := testMessage(i)
		cmd := c.Append("INBOX", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft}, Time: date})
		cmd.Write(msg)
		cmd.Close()
		data, err := cmd.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if data.UID != imap.UID(i) || data.UIDValidity == 0 {
			t.Fatalf("APPENDUID %+v", data)
		}
	}
	if n := c.Mailbox().NumMessages; n != 4 {
		t.Fatalf("after APPEND the client knows %d messages", n)
	}
	msgs := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, InternalDate: true})
	if !msgs[0].InternalDate.Equal(date) || len(msgs[0].Flags) != 1 || msgs[0].Flags[0] != imap.FlagDraft {
		t.Fatalf("appended: %v %v", msgs[0].InternalDate, msgs[0].Flags)
	}
	// APPEND to a missing mailbox: TRYCREATE.
	cmd := c.Append("Missing", 5, nil)
	cmd.Write([]byte("x\r\n\r\n"))
	cmd.Close()
	if _, err := cmd.Wait(); err == nil || err.(*imap.Error).Code != imap.ResponseCodeTryCreate {
		t.Fatalf("APPEND to missing: %v", err)
	}

	// COPY with COPYUID.
	cd, err := c.Copy(imap.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if uids, _ := cd.DestUIDs.Nums(); len(uids) != 2 || uids[0] != 1 {
		t.Fatalf("COPYUID %+v", cd)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Nowhere").Wait(); err == nil || err.(*imap.Error).Code != imap.ResponseCodeTryCreate {
		t.Fatalf("COPY to missing: %v", err)
	}

	// MOVE message 2: COPYUID, then EXPUNGE 2.
	md, err := c.Move(imap.SeqSetNum(2), "Trash").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if src, _ := md.SourceUIDs.(imap.UIDSet).Nums(); len(src) != 1 || src[0] != 2 {
		t.Fatalf("MOVE COPYUID %+v", md)
	}
	if n := c.Mailbox().NumMessages; n != 3 {
		t.Fatalf("after MOVE the client knows %d messages", n)
	}

	// EXPUNGE: flag seq 1 and 3 (UIDs 1 and 4) deleted.
	if err := c.Store(imap.SeqSetNum(1, 3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	exp, err := c.Expunge().Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(exp) != 2 || exp[0] != 3 || exp[1] != 1 {
		t.Fatalf("EXPUNGE sent %v", exp)
	}
	msgs = fetchAll(t, c, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})
	if len(msgs) != 1 || msgs[0].UID != 3 {
		t.Fatalf("left: %+v", msgs)
	}
	// UID EXPUNGE only touches the given UIDs.
	if err := c.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if exp, err := c.UIDExpunge(imap.UIDSetNum(99)).Collect(); err != nil || len(exp) != 0 {
		t.Fatalf("UID EXPUNGE 99: %v %v", exp, err)
	}
	// CLOSE expunges silently; STATUS then shows the result.
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	s, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *s.NumMessages != 1 {
		t.Fatalf("STATUS after UNSELECT: %v %v", s, err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatal(err)
	}
	s, err = c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *s.NumMessages != 0 {
		t.Fatalf("STATUS after CLOSE: %v %v", *s.NumMessages, err)
	}

	// EXAMINE is read-only: STORE is refused, FETCH BODY[] does not set \Seen.
	if _, err := c.Select("Archive", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err == nil {
		t.Fatal("STORE in EXAMINE succeeded")
	}
	full := &imap.FetchItemBodySection{}
	fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{full}})
	msgs = fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true})
	for _, f := range msgs[0].Flags {
		if f == imap.FlagSeen {
			t.Fatal("FETCH BODY[] in EXAMINE set \\Seen")
		}
	}
}

// LIST (SUBSCRIBED RECURSIVEMATCH) reports unsubscribed parents of
// subscribed mailboxes with CHILDINFO (RFC 5258 section 3.5).
func TestListRecursiveMatch(t *testing.T) {
	r := rawSelected(t, "tess", testMessage(1))
	r.send("c CREATE Work/Projects\r\nd SUBSCRIBE Work/Projects\r\ne UNSUBSCRIBE Work\r\n")
	r.expect("c OK")
	r.expect("d OK")
	r.until("e")
	r.send("f LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"\r\n")
	out := r.until("f")
	if !strings.Contains(out, `"Work" (CHILDINFO ("SUBSCRIBED"))`) || strings.Contains(out, "Work/Projects") {
		t.Fatalf("LIST (SUBSCRIBED RECURSIVEMATCH) %%:\n%s", out)
	}
	r.send("g LIST (SUBSCRIBED) \"\" \"*\"\r\n")
	out = r.until("g")
	if !strings.Contains(out, `"Work/Projects"`) || !strings.Contains(out, `\Subscribed`) {
		t.Fatalf("LIST (SUBSCRIBED) *:\n%s", out)
	}
}

// A mailbox deleted by another session while selected: commands on it say
// NONEXISTENT, nothing hangs, and the session can select another one.
func TestSelectedMailboxDeletedElsewhere(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("will")
	deliver(t, st.clients[0], id, testMessage(1))
	_, addr := st.frontend(nil, 0)
	a := login(t, addr, "will")
	b := login(t, addr, "will")
	if err := a.Create("Doomed", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Copy(imap.SeqSetNum(1), "Doomed").Wait(); err == nil {
		t.Fatal("COPY without a selected mailbox succeeded")
	}
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Copy(imap.SeqSetNum(1), "Doomed").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Select("Doomed", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete("Doomed").Wait(); err != nil {
		t.Fatal(err)
	}
	_, err := a.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if e, ok := err.(*imap.Error); err != nil && (!ok || e.Code != imap.ResponseCodeNonExistent) {
		t.Fatalf("FETCH in a deleted mailbox: %v", err)
	}
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if sel, err := a.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT INBOX afterwards: %v %v", sel, err)
	}
}
