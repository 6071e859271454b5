package imap

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

const multipartMsg = "From: a@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"xx\"\r\n\r\n" +
	"preamble\r\n--xx\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nfirst part\r\n" +
	"--xx\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--xx--\r\n"

func TestFetchItemsAndParts(t *testing.T) {
	r := rawSelected(t, "lena", []byte(multipartMsg))

	// Raw lines check the exact wire form of the obsolete RFC822 items,
	// BODY (non-extended) and the MIME part sections.
	r.send("c FETCH 1 (RFC822.SIZE RFC822.HEADER BODY BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[2]<0.4>)\r\n")
	out := r.until("c")
	if !strings.Contains(out, "\nc OK") {
		t.Fatalf("FETCH: %q", out)
	}
	for _, want := range []string{
		"RFC822.SIZE " + itoa(len(multipartMsg)),
		"RFC822.HEADER {",
		`BODY (("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 10 1)("application" "octet-stream" NIL NIL NIL "base64" 8) "mixed")`,
		"BODY[1] {10}\nfirst part BODY[2.MIME]",
		"BODY[2.MIME] {",
		"BODY[2]<0> {4}\nAAEC",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("FETCH response lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `\Seen`) {
		t.Errorf("PEEK and RFC822.HEADER set \\Seen:\n%s", out)
	}
	// RFC822.TEXT is not a peek: \Seen is set and reported.
	r.send("d FETCH 1 (RFC822.TEXT)\r\n")
	l := r.expect("* 1 FETCH")
	for !strings.Contains(l, "FLAGS") {
		l = r.line()
	}
	if !strings.Contains(l, `\Seen`) {
		t.Errorf("RFC822.TEXT: %q", l)
	}
	r.expect("d OK")

	// UID FETCH on an empty mailbox and sequence numbers beyond the end.
	r.send("e SELECT Drafts\r\n")
	r.expect("e OK")
	r.send("f UID FETCH 1:* (FLAGS)\r\n")
	if l := r.line(); l != "f OK UID FETCH completed" {
		t.Errorf("UID FETCH on an empty mailbox: %q", l)
	}
	// LIST "" "" gives the hierarchy delimiter.
	r.send("g LIST \"\" \"\"\r\n")
	if l := r.line(); l != `* LIST (\Noselect) "/" ""` {
		t.Errorf("LIST \"\" \"\": %q", l)
	}
	r.expect("g OK")
	r.send("h LSUB \"\" \"*\"\r\n")
	r.expect("h OK")
	// Thunderbird and Apple Mail ask for the special-use mailboxes.
	r.send("i LIST (SPECIAL-USE) \"\" \"*\"\r\n")
	uses := strings.Split(strings.TrimSuffix(r.until("i"), "\n"), "\n")
	uses = uses[:len(uses)-1]
	if len(uses) != 5 || !strings.Contains(strings.Join(uses, "\n"), `\Sent) "/" "Sent"`) {
		t.Errorf("LIST (SPECIAL-USE):\n%s", strings.Join(uses, "\n"))
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

func TestIMAP4rev2SearchResAndBigAppend(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("mia")
	for i := 1; i <= 5; i++ {
		deliver(t, st.clients[0], id, testMessage(i))
	}
	_, addr := st.frontend(nil, 0)
	c := login(t, addr, "mia")
	if _, err := c.Enable(imap.CapIMAP4rev2).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	res, err := c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 2, Stop: 4}}}},
		&imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Min != 2 || res.Max != 4 || res.Count != 3 {
		t.Fatalf("ESEARCH %+v", res)
	}
	// SEARCHRES (RFC 5182; imapclient cannot send SAVE), advertised.
	if !c.Caps().Has(imap.CapSearchRes) {
		t.Errorf("SEARCHRES not advertised: %v", c.Caps())
	}
	r := dialRaw(t, addr)
	r.send("a LOGIN mia secret\r\nb SELECT INBOX\r\nc UID SEARCH RETURN (SAVE) UID 2:4\r\nd FETCH $ (UID)\r\n")
	r.expect("a OK")
	r.expect("b OK")
	r.expect("c OK")
	for _, want := range []string{"* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)", "* 4 FETCH (UID 4)", "d OK"} {
		if l := r.line(); !strings.HasPrefix(l, want) {
			t.Fatalf("FETCH $: %q, want %q", l, want)
		}
	}

	// A 3 MiB APPEND streams through and reads back identically.
	big := append([]byte("Subject: big append\r\n\r\n"), bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz01234567890123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"), 40000)...)
	cmd := c.Append("INBOX", int64(len(big)), nil)
	if _, err := cmd.Write(big); err != nil {
		t.Fatal(err)
	}
	cmd.Close()
	data, err := cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	sec := &imap.FetchItemBodySection{Peek: true}
	msgs := fetchAll(t, c, imap.UIDSetNum(data.UID), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}})
	if len(msgs) != 1 || !bytes.Equal(msgs[0].FindBodySection(sec), big) {
		t.Fatalf("big message read back wrong (%d messages)", len(msgs))
	}
}

// BODY[HEADER.FIELDS (...)] without PEEK sets \Seen like any body section.
func TestHeaderFieldsSetsSeen(t *testing.T) {
	st := newStack(t, 1)
	id := st.user("pia")
	deliver(t, st.clients[0], id, testMessage(1))
	_, addr := st.frontend(nil, 0)
	c := login(t, addr, "pia")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sec := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}}
	msgs := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}})
	if len(msgs) != 1 || string(msgs[0].FindBodySection(sec)) != "Subject: message 1\r\n\r\n" {
		t.Fatalf("HEADER.FIELDS: %+v", msgs)
	}
	if len(msgs[0].Flags) != 1 || msgs[0].Flags[0] != imap.FlagSeen {
		t.Fatalf("flags after BODY[HEADER.FIELDS]: %v", msgs[0].Flags)
	}
}

// BINARY and BINARY.SIZE (RFC 3516) decode the transfer encoding.
func TestBinary(t *testing.T) {
	r := rawSelected(t, "rita", []byte(multipartMsg))
	r.send("c FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2] BINARY.PEEK[1] BINARY.PEEK[2]<1.2>)\r\n")
	out := r.until("c")
	for _, want := range []string{"BINARY.SIZE[2] 4", "BINARY[2] ~{4}\n\x00\x01\x02\x03", "BINARY[1] ~{10}\nfirst part", "BINARY[2] ~{2}\n\x01\x02", "c OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("BINARY response lacks %q:\n%q", want, out)
		}
	}
	r.send("d FETCH 1 (BINARY[1] BINARY[3])\r\n")
	l := r.expect("* 1 FETCH")
	for !strings.HasPrefix(l, "d ") {
		l = r.line()
		if strings.Contains(l, "FLAGS") && !strings.Contains(l, `\Seen`) {
			t.Errorf("BINARY without PEEK: %q", l)
		}
	}
	if !strings.HasPrefix(l, "d NO [NONEXISTENT]") {
		t.Errorf("BINARY of a missing part: %q", l)
	}
}
