package backend

// Search through the gRPC API: every SearchKey op over a few real messages
// (RFC 2047 subjects, base64 and quoted-printable text parts, multipart),
// with highest_modseq.

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

type sk = mailboxv1.SearchKey

func kAll() *sk                                        { return &sk{Op: mailboxv1.SearchKey_OP_ALL} }
func kAnd(c ...*sk) *sk                                { return &sk{Op: mailboxv1.SearchKey_OP_AND, Children: c} }
func kOr(c ...*sk) *sk                                 { return &sk{Op: mailboxv1.SearchKey_OP_OR, Children: c} }
func kNot(c *sk) *sk                                   { return &sk{Op: mailboxv1.SearchKey_OP_NOT, Children: []*sk{c}} }
func kUID(s *mailboxv1.UIDSet) *sk                     { return &sk{Op: mailboxv1.SearchKey_OP_UID, Uids: s} }
func kFlag(f uint32) *sk                               { return &sk{Op: mailboxv1.SearchKey_OP_FLAG, Number: uint64(f)} }
func kNoFlag(f uint32) *sk                             { return &sk{Op: mailboxv1.SearchKey_OP_NO_FLAG, Number: uint64(f)} }
func kKeyword(k string) *sk                            { return &sk{Op: mailboxv1.SearchKey_OP_FLAG, Text: k} }
func kNoKeyword(k string) *sk                          { return &sk{Op: mailboxv1.SearchKey_OP_NO_FLAG, Text: k} }
func kTime(op mailboxv1.SearchKey_Op, t time.Time) *sk { return &sk{Op: op, Time: t.Unix()} }
func kNum(op mailboxv1.SearchKey_Op, n uint64) *sk     { return &sk{Op: op, Number: n} }
func kHeader(f, v string) *sk                          { return &sk{Op: mailboxv1.SearchKey_OP_HEADER, Field: f, Text: v} }
func kBody(v string) *sk                               { return &sk{Op: mailboxv1.SearchKey_OP_BODY, Text: v} }
func kText(v string) *sk                               { return &sk{Op: mailboxv1.SearchKey_OP_TEXT, Text: v} }

func day(y int, m time.Month, d, h int) time.Time { return time.Date(y, m, d, h, 0, 0, 0, time.UTC) }

// searchMessages are four messages with distinct dates, sizes, flags,
// headers and encodings.
func searchMessages() [][]byte {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	crlf := func(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }
	return [][]byte{
		crlf("From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: Quarterly report\n" +
			"Date: Mon, 01 Dec 2025 10:00:00 +0000\nMessage-ID: <q1@example.test>\n\nThe numbers are in. I am 100% sure.\n"),
		crlf("From: Bob <bob@example.test>\nTo: alice@example.test\nSubject: =?UTF-8?B?" + b64("Grüße aus Köln") + "?=\n" +
			"Date: Sat, 14 Mar 2026 18:30:00 +0100\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n" +
			"Content-Transfer-Encoding: base64\n\n" + b64("Meeting at the Dom cathedral tomorrow, señor.\r\n") + "\n"),
		crlf("From: carol@example.test\nSubject: big one\nX-Priority: 1\nX-Tag: one\nX-Tag: two\nX-Long: alpha\n beta\n\n" + strings.Repeat("lorem ipsum dolor sit amet\n", 200)),
		crlf("From: Dave <dave@example.test>\nTo: alice@example.test\nSubject: =?ISO-8859-1?Q?Caf=E9_meeting?=\n" +
			"Date: Fri, 20 Mar 2026 09:00:00 +0000\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n" +
			"--b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n" +
			"Let's discuss the cr=C3=A8me br=C3=BBl=C3=A9e recipe.\n" +
			"--b1\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: base64\n\n" + b64("zebra crossing plans\r\n") + "\n" +
			"--b1--\n"),
	}
}

func TestSearch(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	const a = "searcher"
	msgs := searchMessages()
	heads := []*mailboxv1.AppendHeader{
		{Flags: &mailboxv1.Flags{System: fSeen, Keywords: []string{"Work"}}, InternalDate: day(2026, 1, 10, 12).Unix()},
		{Flags: &mailboxv1.Flags{System: fFlagged}, InternalDate: day(2026, 3, 15, 8).Unix()},
		{Flags: &mailboxv1.Flags{System: fAnswered, Keywords: []string{"Later"}}, InternalDate: day(2026, 6, 1, 0).Unix()},
		{InternalDate: day(2026, 3, 20, 9).Unix()},
	}
	var id int64
	for i, h := range heads {
		h.AccountId, h.MailboxName = a, "INBOX"
		r := mustAppend(t, c, h, msgs[i])
		if r.Uid != uint32(i+1) {
			t.Fatalf("append %d got uid %d", i, r.Uid)
		}
		id = r.MailboxId
	}
	// A message in another mailbox never matches.
	mustAppend(t, c, &mailboxv1.AppendHeader{AccountId: a, MailboxName: "Archive"}, msgs[0])
	// Message 2 changes last.
	storeFlags(t, c, &mailboxv1.StoreFlagsRequest{AccountId: a, MailboxId: id, Uids: uidSet(2, 2),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{Keywords: []string{"Touched"}}})
	meta := byUID(fetchAll(t, c, a, id, false))
	if meta[3].Size <= 3000 || meta[1].Size >= 3000 || meta[2].Size >= 3000 || meta[4].Size >= 3000 {
		t.Fatalf("sizes %d %d %d %d", meta[1].Size, meta[2].Size, meta[3].Size, meta[4].Size)
	}
	m2 := meta[2].Modseq
	if m2 <= meta[1].Modseq || m2 <= meta[3].Modseq || m2 <= meta[4].Modseq {
		t.Fatalf("modseqs %v", meta)
	}

	O := mailboxv1.SearchKey_OP_BEFORE
	for _, tc := range []struct {
		name string
		key  *sk
		want string
	}{
		{"nil", nil, "[1 2 3 4]"},
		{"ALL", kAll(), "[1 2 3 4]"},
		{"UID 2:*", kUID(uidSet(2, 0)), "[2 3 4]"},
		{"UID 1,3", kUID(uidSet(1, 1, 3, 3)), "[1 3]"},
		{"SEEN", kFlag(fSeen), "[1]"},
		{"UNSEEN", kNoFlag(fSeen), "[2 3 4]"},
		{"FLAGGED", kFlag(fFlagged), "[2]"},
		{"ANSWERED", kFlag(fAnswered), "[3]"},
		{"UNDELETED", kNoFlag(fDeleted), "[1 2 3 4]"},
		{"DRAFT", kFlag(fDraft), "[]"},
		{"KEYWORD Work", kKeyword("Work"), "[1]"},
		{"KEYWORD Later", kKeyword("Later"), "[3]"},
		{"KEYWORD work (case)", kKeyword("work"), "[]"},
		{"KEYWORD none", kKeyword("Nothing"), "[]"},
		{"UNKEYWORD Work", kNoKeyword("Work"), "[2 3 4]"},
		{"UNKEYWORD none", kNoKeyword("Nothing"), "[1 2 3 4]"},
		{"BEFORE 03-15", kTime(O, day(2026, 3, 15, 0)), "[1]"},
		{"BEFORE 03-15 08:00 (exclusive)", kTime(O, day(2026, 3, 15, 8)), "[1]"},
		{"SINCE 03-15 08:00 (inclusive)", kTime(mailboxv1.SearchKey_OP_SINCE, day(2026, 3, 15, 8)), "[2 3 4]"},
		{"SINCE 03-16", kTime(mailboxv1.SearchKey_OP_SINCE, day(2026, 3, 16, 0)), "[3 4]"},
		{"SINCE 2027", kTime(mailboxv1.SearchKey_OP_SINCE, day(2027, 1, 1, 0)), "[]"},
		{"SENTBEFORE 2026", kTime(mailboxv1.SearchKey_OP_SENT_BEFORE, day(2026, 1, 1, 0)), "[1]"},
		{"SENTSINCE 03-14", kTime(mailboxv1.SearchKey_OP_SENT_SINCE, day(2026, 3, 14, 0)), "[2 4]"},
		{"SENTSINCE 03-15", kTime(mailboxv1.SearchKey_OP_SENT_SINCE, day(2026, 3, 15, 0)), "[4]"},
		// NOT is the complement, also for a message without a Date.
		{"NOT SENTBEFORE 2026", kNot(kTime(mailboxv1.SearchKey_OP_SENT_BEFORE, day(2026, 1, 1, 0))), "[2 3 4]"},
		{"NOT SENTSINCE 03-14", kNot(kTime(mailboxv1.SearchKey_OP_SENT_SINCE, day(2026, 3, 14, 0))), "[1 3]"},
		{"LARGER 3000", kNum(mailboxv1.SearchKey_OP_LARGER, 3000), "[3]"},
		{"SMALLER 3000", kNum(mailboxv1.SearchKey_OP_SMALLER, 3000), "[1 2 4]"},
		{"LARGER size1 (exclusive)", kAnd(kUID(uidSet(1, 1)), kNum(mailboxv1.SearchKey_OP_LARGER, uint64(meta[1].Size))), "[]"},
		{"LARGER size1-1", kAnd(kUID(uidSet(1, 1)), kNum(mailboxv1.SearchKey_OP_LARGER, uint64(meta[1].Size-1))), "[1]"},
		{"SMALLER size1 (exclusive)", kAnd(kUID(uidSet(1, 1)), kNum(mailboxv1.SearchKey_OP_SMALLER, uint64(meta[1].Size))), "[]"},
		{"SMALLER size1+1", kAnd(kUID(uidSet(1, 1)), kNum(mailboxv1.SearchKey_OP_SMALLER, uint64(meta[1].Size+1))), "[1]"},
		{"HEADER X-Priority present", kHeader("X-Priority", ""), "[3]"},
		{"HEADER x-priority present", kHeader("x-priority", ""), "[3]"},
		{"HEADER X-Prio (no prefix match)", kHeader("X-Prio", ""), "[]"},
		{"HEADER Date present", kHeader("Date", ""), "[1 2 4]"},
		{"HEADER Subject present", kHeader("Subject", ""), "[1 2 3 4]"},
		{"HEADER X-Missing", kHeader("X-Missing", ""), "[]"},
		{"HEADER Subject report", kHeader("Subject", "report"), "[1]"},
		{"HEADER subject REPORT", kHeader("subject", "REPORT"), "[1]"},
		{"HEADER Subject Köln (RFC 2047)", kHeader("Subject", "Köln"), "[2]"},
		{"HEADER Subject Café (RFC 2047 Q, Latin-1)", kHeader("Subject", "Café meeting"), "[4]"},
		{"HEADER From bob", kHeader("From", "bob"), "[2]"},
		{"HEADER To bob", kHeader("To", "bob@"), "[1]"},
		{"HEADER Message-ID", kHeader("Message-ID", "<q1@"), "[1]"},
		{"HEADER repeated field, second", kHeader("X-Tag", "two"), "[3]"},
		{"HEADER folded field", kHeader("X-Long", "alpha beta"), "[3]"},
		{"HEADER Subject % (escaped)", kHeader("Subject", "%"), "[]"},
		{"HEADER Subject _ (escaped)", kHeader("Subject", "_"), "[]"},
		{"HEADER value not field name", kHeader("Subject", "Subject"), "[]"},
		{"BODY numbers", kBody("numbers"), "[1]"},
		{"BODY NUMBERS", kBody("NUMBERS"), "[1]"},
		{"BODY 100%", kBody("100%"), "[1]"},
		{"BODY %", kBody("%"), "[1]"},
		{"BODY _", kBody("_"), "[]"},
		{"BODY backslash", kBody(`\`), "[]"},
		{"BODY cathedral (base64)", kBody("cathedral"), "[2]"},
		{"BODY señor (base64, UTF-8)", kBody("señor"), "[2]"},
		{"BODY crème brûlée (QP part)", kBody("crème brûlée"), "[4]"},
		{"BODY zebra (base64 part)", kBody("zebra crossing"), "[4]"},
		{"BODY Quarterly (header only)", kBody("Quarterly"), "[]"},
		{"BODY raw base64 is not text", kBody(base64.StdEncoding.EncodeToString([]byte("Meeting at the Dom cathedral tomorrow, señor.\r\n"))[:16]), "[]"},
		{"BODY lorem", kBody("lorem ipsum"), "[3]"},
		{"TEXT Quarterly", kText("Quarterly"), "[1]"},
		{"TEXT Köln", kText("Köln"), "[2]"},
		{"TEXT Café", kText("Café"), "[4]"},
		{"TEXT cathedral", kText("cathedral"), "[2]"},
		{"TEXT carol", kText("carol"), "[3]"},
		{"TEXT example.test", kText("example.test"), "[1 2 3 4]"},
		{"TEXT nothing", kText("xyzzy"), "[]"},
		{"MODSEQ m2", kNum(mailboxv1.SearchKey_OP_MODSEQ, m2), "[2]"},
		{"MODSEQ m2+1", kNum(mailboxv1.SearchKey_OP_MODSEQ, m2+1), "[]"},
		{"MODSEQ 1", kNum(mailboxv1.SearchKey_OP_MODSEQ, 1), "[1 2 3 4]"},
		{"AND", kAnd(kFlag(fSeen), kBody("numbers")), "[1]"},
		{"AND one child", kAnd(kFlag(fFlagged)), "[2]"},
		{"AND disjoint", kAnd(kFlag(fSeen), kFlag(fFlagged)), "[]"},
		{"AND unseen since", kAnd(kNoFlag(fSeen), kTime(mailboxv1.SearchKey_OP_SINCE, day(2026, 3, 15, 0))), "[2 3 4]"},
		{"OR", kOr(kFlag(fFlagged), kNum(mailboxv1.SearchKey_OP_LARGER, 3000)), "[2 3]"},
		{"OR three", kOr(kFlag(fFlagged), kKeyword("Work"), kText("zebra")), "[1 2 4]"},
		{"NOT OR", kNot(kOr(kFlag(fFlagged), kNum(mailboxv1.SearchKey_OP_LARGER, 3000))), "[1 4]"},
		{"NOT NOT", kNot(kNot(kFlag(fSeen))), "[1]"},
		{"NOT ALL", kNot(kAll()), "[]"},
		{"nested", kOr(kAnd(kUID(uidSet(1, 3)), kNoFlag(fSeen), kNot(kHeader("X-Priority", ""))), kText("Café")), "[2 4]"},
		{"UID and unseen", kAnd(kUID(uidSet(1, 3)), kNot(kFlag(fSeen))), "[2 3]"},
	} {
		r, err := c.Search(ctxT(t), &mailboxv1.SearchRequest{AccountId: a, MailboxId: id, Criteria: tc.key})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := fmtUIDs(r.Uids); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
			continue
		}
		var hm uint64
		for _, u := range r.Uids {
			hm = max(hm, meta[u].Modseq)
		}
		if r.HighestModseq != hm {
			t.Errorf("%s: highest_modseq %d, want %d", tc.name, r.HighestModseq, hm)
		}
	}
	// Search of an unknown or another account's mailbox.
	_, err := c.Search(ctxT(t), &mailboxv1.SearchRequest{AccountId: a, MailboxId: id + 1000})
	wantCode(t, "search unknown mailbox", err, codes.NotFound)
	_, err = c.Search(ctxT(t), &mailboxv1.SearchRequest{AccountId: "someone-else", MailboxId: id})
	wantCode(t, "search another account's mailbox", err, codes.NotFound)
}
