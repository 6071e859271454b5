package message

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// crlf turns the LF line endings of a test literal into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// section returns the part named by an IMAP section number ("", "1", "2.1")
// as documented in the package comment, or nil.
func section(top *mailboxv1.BodyStructure, sec string) *mailboxv1.BodyStructure {
	cur := top
	if sec == "" {
		return cur
	}
	for _, f := range strings.Split(sec, ".") {
		n, err := strconv.Atoi(f)
		if err != nil || cur == nil {
			return nil
		}
		if isMessage(cur) {
			cur = cur.Message
		}
		switch {
		case cur.Type == "multipart" && n >= 1 && n <= len(cur.Parts):
			cur = cur.Parts[n-1]
		case cur.Type != "multipart" && n == 1:
		default:
			return nil
		}
	}
	return cur
}

// want describes one part of a parsed message.
type want struct {
	sec      string            // IMAP section number, "" for the top level
	typ      string            // "type/subtype"
	params   map[string]string // checked when non-nil
	encoding string            // checked when non-empty
	body     string            // input[BodyOffset:EndOffset]
	mime     *string           // input[HeaderOffset:BodyOffset], checked when non-nil
	lines    int64             // checked for text/* and message/*
	nparts   int               // len(Parts), checked for multipart
}

func str(s string) *string { return &s }

func mustParse(t *testing.T, in string, opts Options) *Parsed {
	t.Helper()
	p, err := Parse(strings.NewReader(in), int64(len(in)), opts)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for _, v := range checkInvariants([]byte(in), p, opts) {
		t.Errorf("invariant: %s", v)
	}
	for _, window := range []int{7, 100} {
		if diff := windowDiff(strings.NewReader(in), int64(len(in)), opts, p, window); diff != "" {
			t.Errorf("window %d: %s", window, diff)
		}
	}
	return p
}

func checkParts(t *testing.T, in string, p *Parsed, wants []want) {
	t.Helper()
	for _, w := range wants {
		bs := section(p.Structure, w.sec)
		if bs == nil {
			t.Errorf("section %q missing in\n%s", w.sec, prototext.Format(p.Structure))
			continue
		}
		if got := bs.Type + "/" + bs.Subtype; got != w.typ {
			t.Errorf("section %q: type %s, want %s", w.sec, got, w.typ)
		}
		if w.params != nil && !equalMaps(bs.Params, w.params) {
			t.Errorf("section %q: params %v, want %v", w.sec, bs.Params, w.params)
		}
		if w.encoding != "" && bs.Encoding != w.encoding {
			t.Errorf("section %q: encoding %q, want %q", w.sec, bs.Encoding, w.encoding)
		}
		if got := in[bs.BodyOffset:bs.EndOffset]; got != w.body {
			t.Errorf("section %q: body %q, want %q", w.sec, got, w.body)
		}
		if bs.Size != int64(len(w.body)) {
			t.Errorf("section %q: size %d, want %d", w.sec, bs.Size, len(w.body))
		}
		if w.mime != nil {
			if got := in[bs.HeaderOffset:bs.BodyOffset]; got != *w.mime {
				t.Errorf("section %q: MIME header %q, want %q", w.sec, got, *w.mime)
			}
		}
		if (bs.Type == "text" || bs.Type == "message") && bs.Lines != w.lines {
			t.Errorf("section %q: lines %d, want %d", w.sec, bs.Lines, w.lines)
		}
		if bs.Type == "multipart" && len(bs.Parts) != w.nparts {
			t.Errorf("section %q: %d parts, want %d", w.sec, len(bs.Parts), w.nparts)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func addr(name, mailbox, host string) *mailboxv1.Address {
	return &mailboxv1.Address{Name: name, Mailbox: mailbox, Host: host}
}

func groupStart(name string) *mailboxv1.Address {
	return &mailboxv1.Address{Name: name, GroupStart: true}
}

var groupEnd = &mailboxv1.Address{GroupEnd: true}

func checkEnvelope(t *testing.T, got, want *mailboxv1.Envelope) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("envelope\n got: %s\nwant: %s", prototext.Format(got), prototext.Format(want))
	}
}

const simple = `Return-Path: <alice@example.org>
Received: from mx.example.org (mx.example.org [192.0.2.1])
	by mail.example.com with ESMTPS id 4F2A1
	for <bob@example.com>; Tue, 24 Nov 2026 09:15:02 +0000
Date: Tue, 24 Nov 2026 10:15:00 +0100
From: Alice Example <alice@example.org>
To: Bob <bob@example.com>, carol@example.com
Cc: "Dave, Jr." <dave@example.net>
Subject: Lunch
 tomorrow?
Message-ID: <20261124091500.4F2A1@example.org>
In-Reply-To:  <abc@example.com> 
MIME-Version: 1.0

Hi Bob,

lunch at noon?
-- 
Alice
`

// forEOL runs f on the CRLF and the bare-LF form of a literal written with LF;
// conv converts other literals to the same form.
func forEOL(t *testing.T, lit string, f func(t *testing.T, in string, conv func(string) string)) {
	t.Run("CRLF", func(t *testing.T) { f(t, crlf(lit), crlf) })
	t.Run("LF", func(t *testing.T) { f(t, lit, func(s string) string { return s }) })
}

func TestSimple(t *testing.T) {
	forEOL(t, simple, func(t *testing.T, in string, conv func(string) string) {
		p := mustParse(t, in, Options{})
		hdrEnd := strings.Index(in, conv("\n\n")) + len(conv("\n\n"))
		if string(p.Header) != in[:hdrEnd] {
			t.Errorf("Header %q, want %q", p.Header, in[:hdrEnd])
		}
		body := in[hdrEnd:]
		checkParts(t, in, p, []want{
			{sec: "", typ: "text/plain", params: map[string]string{"charset": "us-ascii"}, encoding: "7bit", body: body, lines: 5},
			{sec: "1", typ: "text/plain", body: body, lines: 5},
		})
		checkEnvelope(t, p.Envelope, &mailboxv1.Envelope{
			Date:      "Tue, 24 Nov 2026 10:15:00 +0100",
			Subject:   "Lunch tomorrow?",
			From:      []*mailboxv1.Address{addr("Alice Example", "alice", "example.org")},
			Sender:    []*mailboxv1.Address{addr("Alice Example", "alice", "example.org")},
			ReplyTo:   []*mailboxv1.Address{addr("Alice Example", "alice", "example.org")},
			To:        []*mailboxv1.Address{addr("Bob", "bob", "example.com"), addr("", "carol", "example.com")},
			Cc:        []*mailboxv1.Address{addr("Dave, Jr.", "dave", "example.net")},
			InReplyTo: "<abc@example.com>",
			MessageId: "<20261124091500.4F2A1@example.org>",
		})
		if want := time.Date(2026, 11, 24, 9, 15, 0, 0, time.UTC); !p.SentDate.Equal(want) {
			t.Errorf("SentDate %v, want %v", p.SentDate, want)
		}
		if !strings.Contains(p.SearchHeader, "Received: from mx.example.org (mx.example.org [192.0.2.1])\tby mail.example.com with ESMTPS id 4F2A1\tfor <bob@example.com>; Tue, 24 Nov 2026 09:15:02 +0000\n") ||
			!strings.Contains(p.SearchHeader, "Subject: Lunch tomorrow?\n") ||
			!strings.HasPrefix(p.SearchHeader, "Return-Path: <alice@example.org>\n") ||
			strings.Count(p.SearchHeader, "\n") != 10 {
			t.Errorf("SearchHeader %q", p.SearchHeader)
		}
		if p.SearchBody != body {
			t.Errorf("SearchBody %q, want %q", p.SearchBody, body)
		}
	})
}

const alternative = `From: a@example.org
Subject: alt
Content-Type: multipart/alternative; boundary="==alt-b0und4ry=="

This is a multi-part message in MIME format.

--==alt-b0und4ry==
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

Gr=C3=BC=C3=9Fe aus K=C3=B6ln,=
 bis bald
--==alt-b0und4ry==
Content-Type: text/html; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

<p>Gr=FC=DFe</p>

--==alt-b0und4ry==--
epilogue
`

func TestAlternative(t *testing.T) {
	forEOL(t, alternative, func(t *testing.T, in string, conv func(string) string) {
		p := mustParse(t, in, Options{})
		checkParts(t, in, p, []want{
			{sec: "", typ: "multipart/alternative", params: map[string]string{"boundary": "==alt-b0und4ry=="},
				body: in[strings.Index(in, conv("This is")):], nparts: 2},
			{sec: "1", typ: "text/plain", params: map[string]string{"charset": "utf-8"}, encoding: "quoted-printable",
				body:  conv("Gr=C3=BC=C3=9Fe aus K=C3=B6ln,=\n bis bald"),
				mime:  str(conv("Content-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: quoted-printable\n\n")),
				lines: 2},
			{sec: "2", typ: "text/html", params: map[string]string{"charset": "iso-8859-1"},
				body: conv("<p>Gr=FC=DFe</p>\n"), lines: 1},
		})
		for _, w := range []string{"Grüße aus Köln, bis bald", "<p>Grüße</p>"} {
			if !strings.Contains(p.SearchBody, w) {
				t.Errorf("SearchBody %q lacks %q", p.SearchBody, w)
			}
		}
		if strings.Contains(p.SearchBody, "epilogue") || strings.Contains(p.SearchBody, "multi-part") {
			t.Errorf("SearchBody %q has preamble or epilogue", p.SearchBody)
		}
	})
}

func TestMixedAttachment(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString([]byte("BINARYSECRET-" + strings.Repeat("x", 100)))
	in := crlf(`From: a@example.org
Content-Type: multipart/mixed;
	boundary="----=_Part_1_2.3"

------=_Part_1_2.3
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: base64

` + base64.StdEncoding.EncodeToString([]byte("Bonjour \xe0 tous")) + `
------=_Part_1_2.3
Content-Type: application/pdf; name="=?UTF-8?B?UmVjaG51bmcucGRm?="
Content-Transfer-Encoding: BASE64
Content-Disposition: attachment;
	filename*=UTF-8''R%C3%A9sum%C3%A9.pdf; size=77
Content-ID: <part2@example.org>
Content-Description: the invoice
Content-Language: de, en (comment)
Content-Location: http://example.org/
 invoice.pdf
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==

` + secret[:40] + "\n" + secret[40:] + `
------=_Part_1_2.3--
`)
	p := mustParse(t, in, Options{})
	checkParts(t, in, p, []want{
		{sec: "", typ: "multipart/mixed", params: map[string]string{"boundary": "----=_Part_1_2.3"}, nparts: 2,
			body: in[strings.Index(in, "\r\n\r\n")+4:]},
		{sec: "1", typ: "text/plain", params: map[string]string{"charset": "ISO-8859-1"}, encoding: "base64",
			body: base64.StdEncoding.EncodeToString([]byte("Bonjour \xe0 tous")), lines: 1},
		{sec: "2", typ: "application/pdf", params: map[string]string{"name": "Rechnung.pdf"}, encoding: "base64",
			body: crlf(secret[:40] + "\n" + secret[40:])},
	})
	a := section(p.Structure, "2")
	if a.Disposition != "attachment" || !equalMaps(a.DispositionParams, map[string]string{"filename": "Résumé.pdf", "size": "77"}) {
		t.Errorf("disposition %q %v", a.Disposition, a.DispositionParams)
	}
	if a.Id != "<part2@example.org>" || a.Description != "the invoice" || a.Md5 != "Q2hlY2sgSW50ZWdyaXR5IQ==" ||
		a.Location != "http://example.org/invoice.pdf" || strings.Join(a.Language, ",") != "de,en" {
		t.Errorf("fields: id %q desc %q md5 %q loc %q lang %q", a.Id, a.Description, a.Md5, a.Location, a.Language)
	}
	if p.SearchBody != "Bonjour à tous" {
		t.Errorf("SearchBody %q", p.SearchBody)
	}
}

func TestNestedMessage(t *testing.T) {
	inner := `From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>
To: list@example.org
Subject: inner
Content-Type: multipart/mixed; boundary=inner

--inner
Content-Type: text/plain

inner text
--inner
Content-Type: image/png
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--inner--
`
	in := crlf(`From: fwd@example.org
Subject: Fwd: inner
Content-Type: multipart/mixed; boundary=outer

--outer

see attached
--outer
Content-Type: message/rfc822
Content-Disposition: inline

` + inner + `
--outer--
`)
	innerCRLF := crlf(inner)
	innerHdr := innerCRLF[:strings.Index(innerCRLF, "\r\n\r\n")+4]
	p := mustParse(t, in, Options{})
	checkParts(t, in, p, []want{
		{sec: "1", typ: "text/plain", params: map[string]string{"charset": "us-ascii"}, body: "see attached", mime: str("\r\n"), lines: 1},
		{sec: "2", typ: "message/rfc822", body: innerCRLF, lines: int64(strings.Count(inner, "\n")),
			mime: str("Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n")},
		{sec: "2.1", typ: "text/plain", body: "inner text", mime: str("Content-Type: text/plain\r\n\r\n"), lines: 1},
		{sec: "2.2", typ: "image/png", encoding: "base64", body: "iVBORw0KGgo="},
	})
	m := section(p.Structure, "2")
	// BODY[2.HEADER] and BODY[2.TEXT] from the encapsulated message.
	if got := in[m.Message.HeaderOffset:m.Message.BodyOffset]; got != innerHdr {
		t.Errorf("BODY[2.HEADER] %q, want %q", got, innerHdr)
	}
	if got := in[m.Message.BodyOffset:m.Message.EndOffset]; got != innerCRLF[len(innerHdr):] {
		t.Errorf("BODY[2.TEXT] %q", got)
	}
	if m.Message.Type != "multipart" || len(m.Message.Parts) != 2 {
		t.Errorf("encapsulated structure %s", prototext.Format(m.Message))
	}
	checkEnvelope(t, m.Envelope, &mailboxv1.Envelope{
		Subject: "inner",
		From:    []*mailboxv1.Address{addr("André Pirard", "PIRARD", "vm1.ulg.ac.be")},
		Sender:  []*mailboxv1.Address{addr("André Pirard", "PIRARD", "vm1.ulg.ac.be")},
		ReplyTo: []*mailboxv1.Address{addr("André Pirard", "PIRARD", "vm1.ulg.ac.be")},
		To:      []*mailboxv1.Address{addr("", "list", "example.org")},
	})
	if p.Envelope.Subject != "Fwd: inner" {
		t.Errorf("outer subject %q", p.Envelope.Subject)
	}
	for _, w := range []string{"see attached", "From: André Pirard <PIRARD@vm1.ulg.ac.be>\n", "inner text"} {
		if !strings.Contains(p.SearchBody, w) {
			t.Errorf("SearchBody %q lacks %q", p.SearchBody, w)
		}
	}
	if strings.Contains(p.SearchBody, "iVBOR") {
		t.Errorf("SearchBody has the image: %q", p.SearchBody)
	}
}

func TestEncodedWords(t *testing.T) {
	tests := []struct {
		subject, want string
	}{
		{"=?UTF-8?B?w4lsw6h2ZSDDoCBsJ8OpY29sZQ==?=", "Élève à l'école"},
		{"=?iso-8859-1?q?this=20is=20some=20text?=", "this is some text"},
		{"=?ISO-8859-15?Q?Preis:_10_=A4?=", "Preis: 10 €"},
		{"=?windows-1252?Q?=93quoted=94?=", "\u201cquoted\u201d"},
		{"=?KOI8-R?B?8NLJ18XU?=", "Привет"},
		{"=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=", "こんにちは"},
		{"=?Shift_JIS?B?g2WDWINn?=", "テスト"},
		{"=?GB2312?B?xOO6ww==?=", "你好"},
		{"=?utf-8?q?split?= =?utf-8?q?_words?=", "split words"},
		{"plain =?utf-8?q?and?= encoded", "plain and encoded"},
		{"=?x-unknown?q?keep?=", "keep"},
		{"=?utf-8?b?broken", "=?utf-8?b?broken"},
		{"raw 8bit \xe9t\xe9", "raw 8bit \uFFFDt\uFFFD"},
		{"raw utf-8 été", "raw utf-8 été"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			in := crlf("Subject: " + tc.subject + "\nFrom: =?utf-8?q?Ren=C3=A9e?= <r@x.example>, \"=?utf-8?b?5bGx55Sw?=\" <y@x.example>\n\nbody\n")
			p := mustParse(t, in, Options{})
			if p.Envelope.Subject != tc.want {
				t.Errorf("subject %q, want %q", p.Envelope.Subject, tc.want)
			}
			if !strings.Contains(p.SearchHeader, "Subject: "+tc.want+"\n") {
				t.Errorf("SearchHeader %q lacks subject %q", p.SearchHeader, tc.want)
			}
			want := []*mailboxv1.Address{addr("Renée", "r", "x.example"), addr("山田", "y", "x.example")}
			checkEnvelope(t, p.Envelope, &mailboxv1.Envelope{Subject: tc.want, From: want, Sender: want, ReplyTo: want})
		})
	}
}

func TestAddressLists(t *testing.T) {
	tests := []struct {
		name, value string
		want        []*mailboxv1.Address
	}{
		{"empty group", "undisclosed-recipients:;", []*mailboxv1.Address{groupStart("undisclosed-recipients"), groupEnd}},
		{"group and mailbox", `A Group: a@x.example, "B" <b@y.example>; c@z.example`,
			[]*mailboxv1.Address{groupStart("A Group"), addr("", "a", "x.example"), addr("B", "b", "y.example"), groupEnd, addr("", "c", "z.example")}},
		{"unterminated group", "Team: a@x.example",
			[]*mailboxv1.Address{groupStart("Team"), addr("", "a", "x.example"), groupEnd}},
		{"encoded group name", "=?utf-8?q?=C3=89quipe?=: a@x.example;",
			[]*mailboxv1.Address{groupStart("Équipe"), addr("", "a", "x.example"), groupEnd}},
		{"comment name", "john@x.example (John Smith)", []*mailboxv1.Address{addr("John Smith", "john", "x.example")}},
		{"route", "<@relay.example:joe@x.example>", []*mailboxv1.Address{addr("", "joe", "x.example")}},
		{"no domain", "Joe <joe>", []*mailboxv1.Address{addr("Joe", "joe", missingDomain)}},
		{"bare name", "Joe Bloggs", []*mailboxv1.Address{addr("", "JoeBloggs", missingDomain)}},
		{"empty entries", " , <>, a@x.example,", []*mailboxv1.Address{addr("", "a", "x.example")}},
		{"unquoted comma in 8bit name", "M\xfcller, Hans <h@x.example>",
			[]*mailboxv1.Address{addr("", "M\uFFFDller", missingDomain), addr("Hans", "h", "x.example")}},
		{"lenient with comments", `Sales (the "team" (EU)) "Dept." <sales@x.example>>`,
			[]*mailboxv1.Address{addr("Sales Dept.", "sales", "x.example")}},
		{"lenient unterminated angle", `=?utf-8?q?M=C3=BCller?= (x\) y) <m@x.example`,
			[]*mailboxv1.Address{addr("Müller", "m", "x.example")}},
		{"lenient quoted local part", `Q <"a b"@x.example>>`, []*mailboxv1.Address{addr("Q", "a b", "x.example")}},
		{"encoded word with colon", `=?utf-8?q?a:b?= <a@x.example>`, []*mailboxv1.Address{addr("a:b", "a", "x.example")}},
		{"quoted local part", `"john doe"@x.example`, []*mailboxv1.Address{addr("", "john doe", "x.example")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := crlf("To: " + tc.value + "\n\n")
			p := mustParse(t, in, Options{})
			checkEnvelope(t, &mailboxv1.Envelope{To: p.Envelope.To}, &mailboxv1.Envelope{To: tc.want})
		})
	}
}

func TestSenderReplyTo(t *testing.T) {
	in := crlf("From: a@x.example\nSender: s@x.example\nReply-To:\n\n")
	p := mustParse(t, in, Options{})
	want := &mailboxv1.Envelope{
		From:    []*mailboxv1.Address{addr("", "a", "x.example")},
		Sender:  []*mailboxv1.Address{addr("", "s", "x.example")},
		ReplyTo: []*mailboxv1.Address{addr("", "a", "x.example")},
	}
	checkEnvelope(t, p.Envelope, want)
	// Defaulted lists are copies, not shared.
	if p.Envelope.ReplyTo[0] == p.Envelope.From[0] {
		t.Error("ReplyTo shares From's address")
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		opts  Options
		wants []want
	}{
		{name: "empty", in: "", wants: []want{{typ: "text/plain", body: ""}}},
		{name: "no header", in: "Hello there\r\nsecond line\r\n",
			wants: []want{{typ: "text/plain", body: "Hello there\r\nsecond line\r\n", mime: str(""), lines: 2}}},
		{name: "header only", in: "Subject: x\r\nFrom: a@b.example",
			wants: []want{{typ: "text/plain", body: "", mime: str("Subject: x\r\nFrom: a@b.example"), lines: 0}}},
		{name: "blank first line", in: "\r\nbody", wants: []want{{typ: "text/plain", body: "body", mime: str("\r\n"), lines: 1}}},
		{name: "mbox From line kept in header", in: "From alice@example.org Tue Nov 24 09:15:02 2026\nSubject: x\n\nbody\n",
			wants: []want{{typ: "text/plain", body: "body\n", mime: str("From alice@example.org Tue Nov 24 09:15:02 2026\nSubject: x\n\n"), lines: 1}}},
		{name: "junk header line kept in header", in: "Subject: x\r\njunk line\r\nTo: a@b.example\r\n\r\nbody",
			wants: []want{{typ: "text/plain", body: "body", lines: 1}}},
		{name: "missing final boundary", in: crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\nContent-Type: text/html\n\ntwo\nstill two\n"),
			wants: []want{
				{typ: "multipart/mixed", body: crlf("--b\n\none\n--b\nContent-Type: text/html\n\ntwo\nstill two\n"), nparts: 2},
				{sec: "1", typ: "text/plain", body: "one", lines: 1},
				{sec: "2", typ: "text/html", body: crlf("two\nstill two\n"), lines: 2},
			}},
		{name: "no boundary line", in: crlf("Content-Type: multipart/mixed; boundary=b\n\njust text\n"),
			wants: []want{
				{typ: "multipart/mixed", body: crlf("just text\n"), nparts: 1},
				{sec: "1", typ: "text/plain", body: crlf("just text\n"), lines: 1},
			}},
		{name: "no boundary parameter", in: crlf("Content-Type: multipart/mixed\n\n--b\n\nx\n"),
			wants: []want{{typ: "text/plain", params: map[string]string{"charset": "us-ascii"}, body: crlf("--b\n\nx\n"), lines: 3}}},
		{name: "invalid content type", in: crlf("Content-Type: ???\nContent-Transfer-Encoding: 8BIT\n\nx"),
			wants: []want{{typ: "text/plain", params: map[string]string{"charset": "us-ascii"}, encoding: "8bit", body: "x", lines: 1}}},
		{name: "bad parameters", in: crlf("Content-Type: Text/HTML; charset=\"utf-8\"; charset=latin1; foo; =x; name=\"a\\\"b\n\nx"),
			wants: []want{{typ: "text/html", params: map[string]string{"charset": "utf-8", "name": `a"b`}, body: "x", lines: 1}}},
		{name: "part without header and blank line", in: crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nno header here\n--b--\n"),
			wants: []want{{sec: "1", typ: "text/plain", body: "no header here", mime: str(""), lines: 1}}},
		{name: "boundary in part header", in: crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n--b--\n"),
			wants: []want{{sec: "1", typ: "text/html", body: "", mime: str("Content-Type: text/html\r\n"), lines: 0}}},
		{name: "empty parts", in: crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\n\n\n--b--"),
			wants: []want{
				{typ: "multipart/mixed", body: crlf("--b\n--b\n\n\n--b--"), nparts: 2},
				{sec: "1", typ: "text/plain", body: "", mime: str(""), lines: 0},
				{sec: "2", typ: "text/plain", body: "", mime: str("\r\n"), lines: 0},
			}},
		{name: "boundary with trailing space and prefix lookalike", in: crlf("Content-Type: multipart/mixed; boundary=b\n\n--b \n\n--bb\n--b-- \nepi"),
			wants: []want{{sec: "1", typ: "text/plain", body: "--bb", lines: 1}}},
		{name: "outer boundary closes inner", in: crlf("Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\n\ninner\n--o\n\nsecond\n--o--\n"),
			wants: []want{
				{typ: "multipart/mixed", nparts: 2, body: crlf("--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\n\ninner\n--o\n\nsecond\n--o--\n")},
				{sec: "1", typ: "multipart/alternative", nparts: 1, body: crlf("--i\n\ninner")},
				{sec: "1.1", typ: "text/plain", body: "inner", lines: 1},
				{sec: "2", typ: "text/plain", body: "second", lines: 1},
			}},
		{name: "digest default", in: crlf("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\n1\n--d\nContent-Type: text/plain\n\nt\n--d--\n"),
			wants: []want{
				{sec: "1", typ: "message/rfc822", body: crlf("Subject: one\n\n1"), lines: 3},
				{sec: "1.1", typ: "text/plain", body: "1", lines: 1},
				{sec: "2", typ: "text/plain", body: "t", lines: 1},
			}},
		{name: "base64 message/rfc822 is opaque", in: crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeA0KDQp4\n--b--\n"),
			wants: []want{{sec: "1", typ: "application/octet-stream", encoding: "base64", body: "U3ViamVjdDogeA0KDQp4"}}},
		{name: "empty message/rfc822", in: crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\n--b--\n"),
			wants: []want{
				{sec: "1", typ: "message/rfc822", body: "", lines: 0},
				{sec: "1.1", typ: "text/plain", body: "", mime: str(""), lines: 0},
			}},
		{name: "8-bit junk", in: "Subject: \xff\xfe\x00\x01\r\nContent-Type: text/plain; charset=\"\xff\"; name=\"\xe9\"\r\n\r\n\x00\xff\xfe body\r\n",
			wants: []want{{typ: "text/plain", params: map[string]string{"charset": "\uFFFD", "name": "\uFFFD"}, body: "\x00\xff\xfe body\r\n", lines: 1}}},
		{name: "8-bit boundary", in: "Content-Type: multipart/mixed; boundary=\xb2\r\n\r\n--\xb2\r\n\r\nx\r\n--\xb2--\r\n",
			wants: []want{
				{typ: "multipart/mixed", params: map[string]string{"boundary": "\uFFFD"}, nparts: 1, body: "--\xb2\r\n\r\nx\r\n--\xb2--\r\n"},
				{sec: "1", typ: "text/plain", body: "x", lines: 1},
			}},
		{name: "message header cut by boundary", in: crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\nSubject: x\n--b--"),
			wants: []want{
				{sec: "1", typ: "message/rfc822", body: "Subject: x\r\n", lines: 1},
				{sec: "1.1", typ: "text/plain", body: "", mime: str("Subject: x\r\n"), lines: 0},
			}},
		{name: "delimiter right before outer boundary", in: "Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/mixed; boundary=i\n\n--i\n--o",
			wants: []want{
				{sec: "1", typ: "multipart/mixed", nparts: 1, body: "--i\n"},
				{sec: "1.1", typ: "text/plain", body: "", mime: str(""), lines: 0},
			}},
		{name: "bare CR is not a line end", in: "Subject: a\rb\r\n\r\nx\ry",
			wants: []want{{typ: "text/plain", body: "x\ry", lines: 1}}},
		{name: "mixed line endings", in: "Content-Type: multipart/mixed; boundary=b\n\r\n--b\r\n\nlf part\n--b\r\n\r\ncrlf part\r\n--b--\n",
			wants: []want{
				{sec: "1", typ: "text/plain", body: "lf part", mime: str("\n"), lines: 1},
				{sec: "2", typ: "text/plain", body: "crlf part", mime: str("\r\n"), lines: 1},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustParse(t, tc.in, tc.opts)
			checkParts(t, tc.in, p, tc.wants)
		})
	}
}

// nested builds a message of depth levels of multipart/mixed around a text
// part, alternating with message/rfc822 when withMessages.
func nested(depth int, withMessages bool) string {
	var b strings.Builder
	var closes []string
	for i := range depth {
		if withMessages && i%2 == 1 {
			b.WriteString("Content-Type: message/rfc822\r\n\r\n")
			continue
		}
		bd := "b" + strconv.Itoa(i)
		b.WriteString("Content-Type: multipart/mixed; boundary=" + bd + "\r\n\r\n--" + bd + "\r\n")
		closes = append(closes, "\r\n--"+bd+"--")
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeepest")
	for i := len(closes) - 1; i >= 0; i-- {
		b.WriteString(closes[i])
	}
	return b.String()
}

func maxDepth(bs *mailboxv1.BodyStructure) int {
	d := 0
	for _, c := range bs.Parts {
		d = max(d, maxDepth(c))
	}
	if bs.Message != nil {
		d = max(d, maxDepth(bs.Message))
	}
	return d + 1
}

func TestDepthLimit(t *testing.T) {
	tests := []struct {
		name      string
		levels    int
		messages  bool
		opts      Options
		wantDepth int
	}{
		{"within default", 10, false, Options{}, 11},
		{"beyond default", 200, false, Options{}, DefaultMaxDepth},
		{"beyond small limit", 10, false, Options{MaxDepth: 3}, 3},
		{"messages beyond small limit", 10, true, Options{MaxDepth: 4}, 4},
		{"limit of one", 5, true, Options{MaxDepth: 1}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := nested(tc.levels, tc.messages)
			p := mustParse(t, in, tc.opts)
			if d := maxDepth(p.Structure); d != tc.wantDepth {
				t.Errorf("depth %d, want %d", d, tc.wantDepth)
			}
			deepest := strings.Contains(p.SearchBody, "deepest")
			if deepest != (tc.wantDepth > tc.levels) {
				t.Errorf("SearchBody %q: deepest text present %v", p.SearchBody, deepest)
			}
		})
	}
	// The opaque part at the limit still spans its whole body.
	in := nested(3, false)
	p := mustParse(t, in, Options{MaxDepth: 2})
	leaf := section(p.Structure, "1")
	if leaf.Type != "application" || !strings.HasPrefix(in[leaf.BodyOffset:leaf.EndOffset], "--b1\r\n") || !strings.HasSuffix(in[leaf.BodyOffset:leaf.EndOffset], "--b2--\r\n--b1--") {
		t.Errorf("opaque leaf %s/%s body %q", leaf.Type, leaf.Subtype, in[leaf.BodyOffset:leaf.EndOffset])
	}
}

func TestPartsLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := range 100 {
		b.WriteString("--b\r\n\r\npart " + strconv.Itoa(i) + "\r\n")
	}
	b.WriteString("--b--\r\n")
	in := b.String()
	p := mustParse(t, in, Options{MaxParts: 10})
	if n := len(p.Structure.Parts); n != 9 {
		t.Errorf("%d parts, want 9 (10 with the multipart)", n)
	}
	last := p.Structure.Parts[len(p.Structure.Parts)-1]
	if got := in[last.BodyOffset:last.EndOffset]; got != "part 8" {
		t.Errorf("last described part %q", got)
	}
	if p.Structure.EndOffset != int64(len(in)) {
		t.Errorf("multipart end %d", p.Structure.EndOffset)
	}
	if strings.Contains(p.SearchBody, "part 9") {
		t.Errorf("SearchBody has undescribed parts: %q", p.SearchBody)
	}
	// A multipart with no room for a child is opaque.
	p = mustParse(t, in, Options{MaxParts: 1})
	if p.Structure.Type != "application" {
		t.Errorf("MaxParts 1: %s/%s", p.Structure.Type, p.Structure.Subtype)
	}
}

func TestSearchTextLimit(t *testing.T) {
	body := strings.Repeat("héllo wörld ", 1000)
	in := crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=utf-8\n\n" + body + "\n--b\n\nsecond part\n--b--\n")
	for _, limit := range []int{1, 2, 3, 100, 101, 1000} {
		p := mustParse(t, in, Options{MaxSearchText: limit})
		if len(p.SearchBody) > limit || !utf8.ValidString(p.SearchBody) || !strings.HasPrefix(body, p.SearchBody) || len(p.SearchBody) < limit-2 {
			t.Errorf("limit %d: SearchBody %d bytes %q", limit, len(p.SearchBody), p.SearchBody)
		}
	}
	p := mustParse(t, in, Options{})
	if p.SearchBody != body+"\nsecond part" {
		t.Errorf("SearchBody %q", p.SearchBody)
	}
}

func TestLongLines(t *testing.T) {
	// Lines longer than the scanner's window, with a CR right at a window
	// edge, must keep offsets exact.
	for _, n := range []int{windowSize - 1, windowSize, windowSize + 1, 3*windowSize + 7} {
		long := strings.Repeat("A", n)
		in := "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n" + long + "\r\n--b\r\n\r\n" + long[:10] + "\r\n--b--\r\n"
		p := mustParse(t, in, Options{})
		checkParts(t, in, p, []want{
			{sec: "1", typ: "application/octet-stream", body: long},
			{sec: "2", typ: "text/plain", body: long[:10], lines: 1},
		})
	}
}

func TestScannerWindows(t *testing.T) {
	inputs := []string{
		"", "\n", "\r\n", "a", "a\nb", "a\r\nb\r\n", "\r\r\n\n\r",
		strings.Repeat("x", 50) + "\r\n" + strings.Repeat("y", 7) + "\r",
		"ab\r\ncd\nef\r\r\n" + strings.Repeat("z\r", 20) + "\n",
	}
	for _, in := range inputs {
		var want []string
		for rest := in; rest != ""; {
			i := strings.IndexByte(rest, '\n') + 1
			if i == 0 {
				i = len(rest)
			}
			want = append(want, rest[:i])
			rest = rest[i:]
		}
		for window := 1; window <= 12; window++ {
			s := newScanner(strings.NewReader(in), int64(len(in)), window)
			var got []string
			for s.next() {
				line := in[s.start:s.end]
				eol := 0
				if strings.HasSuffix(line, "\r\n") {
					eol = 2
				} else if strings.HasSuffix(line, "\n") {
					eol = 1
				}
				if s.eol != eol || !strings.HasPrefix(line, string(s.head)) {
					t.Errorf("window %d, line %q: eol %d head %q", window, line, s.eol, s.head)
				}
				got = append(got, line)
			}
			if strings.Join(got, "|") != strings.Join(want, "|") || s.err != nil {
				t.Errorf("window %d: lines %q, want %q (err %v)", window, got, want, s.err)
			}
		}
	}
}

type failingReader struct{ data []byte }

var errDisk = errors.New("disk on fire")

func (f failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(f.data))/2 {
		return 0, errDisk
	}
	return copy(p, f.data[off:]), nil
}

func TestReadErrors(t *testing.T) {
	in := []byte(crlf(alternative))
	if _, err := Parse(failingReader{in}, int64(len(in)), Options{}); !errors.Is(err, errDisk) {
		t.Errorf("failing reader: err %v", err)
	}
	if _, err := Parse(bytes.NewReader(in), int64(len(in))+10, Options{}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short reader: err %v", err)
	}
	p, err := Parse(bytes.NewReader(in), -5, Options{})
	if err != nil || p.Size != 0 {
		t.Errorf("negative size: %v, %v", p, err)
	}
}

func TestSentDate(t *testing.T) {
	tests := []struct {
		date string
		want time.Time
	}{
		{"Mon, 02 Jan 2006 15:04:05 -0700", time.Date(2006, 1, 2, 22, 4, 5, 0, time.UTC)},
		{"2 Jan 2006 15:04:05 +0000 (UTC)", time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"Tue, 24 Nov 2026 10:15 +0100", time.Date(2026, 11, 24, 9, 15, 0, 0, time.UTC)},
		{"24 Nov 2026 10:15:00 GMT", time.Date(2026, 11, 24, 10, 15, 0, 0, time.UTC)},
		{"31 Feb 2026 10:15:00 +0000", time.Time{}},
		{"yesterday", time.Time{}},
		{"", time.Time{}},
	}
	for _, tc := range tests {
		p := mustParse(t, crlf("Date: "+tc.date+"\n\n"), Options{})
		if !p.SentDate.Equal(tc.want) {
			t.Errorf("Date %q: SentDate %v, want %v", tc.date, p.SentDate, tc.want)
		}
		if p.Envelope.Date != tc.date {
			t.Errorf("Date %q: envelope date %q", tc.date, p.Envelope.Date)
		}
	}
}

// TestParseDateFast checks the fast path against net/mail.ParseDate: where the
// fast path accepts, both agree.
func TestParseDateFast(t *testing.T) {
	for _, s := range []string{
		"Mon, 02 Jan 2006 15:04:05 -0700", "2 jan 2006 15:04 +0000", "Sun,  3 Mar 1996 01:02:03 +0530 (IST)",
		"29 Feb 2024 23:59:59 -1200", "Thu, 1 Jan 1970 00:00:00 +0000", " 7 Dec 2026 07:07:07 -0000 ",
	} {
		fast, ok := parseDateFast(s)
		slow, err := mail.ParseDate(s)
		if !ok || err != nil || !fast.Equal(slow) {
			t.Errorf("%q: fast %v %v, net/mail %v %v", s, fast, ok, slow, err)
		}
		_, offFast := fast.Zone()
		_, offSlow := slow.Zone()
		if offFast != offSlow {
			t.Errorf("%q: zone offset %d, net/mail %d", s, offFast, offSlow)
		}
	}
	for _, s := range []string{"", "Mon, 02 Jan 06 15:04:05 -0700", "02 Foo 2006 15:04:05 +0000", "02 Jan 2006 24:00:00 +0000",
		"02 Jan 2006 15:04:05 +0060", "02 Jan 2006 15:04:05", "02 Jan 2006 15:04:05 UT", "123 Jan 2006 15:04 +0000"} {
		if tm, ok := parseDateFast(s); ok {
			t.Errorf("%q: fast path accepted as %v", s, tm)
		}
	}
}

func TestConcurrent(t *testing.T) {
	in := crlf(alternative)
	want := mustParse(t, in, Options{})
	done := make(chan *Parsed)
	for range 4 {
		go func() {
			p, _ := Parse(strings.NewReader(in), int64(len(in)), Options{})
			done <- p
		}()
	}
	for range 4 {
		p := <-done
		if p == nil || !proto.Equal(p.Structure, want.Structure) || !proto.Equal(p.Envelope, want.Envelope) || p.SearchBody != want.SearchBody {
			t.Errorf("concurrent parse differs: %v", p)
		}
	}
}

func TestParams(t *testing.T) {
	tests := []struct {
		in, value string
		params    map[string]string
	}{
		{`text/plain; charset="utf-8"; format=flowed`, "text/plain", map[string]string{"charset": "utf-8", "format": "flowed"}},
		{`Attachment; filename*=iso-8859-1''R%E9sum%E9.pdf`, "attachment", map[string]string{"filename": "Résumé.pdf"}},
		{`attachment; filename*0*=utf-8''a%C3%A9; filename*1=b.pdf`, "attachment", map[string]string{"filename": "aéb.pdf"}},
		{`attachment; filename*1="b c"; filename*0="a "`, "attachment", map[string]string{"filename": "a b c"}},
		{`attachment; filename="plain.txt"; filename*=utf-8''%E2%82%AC.txt`, "attachment", map[string]string{"filename": "€.txt"}},
		{`attachment; name*=koi8-r'ru'%F0%D2%C9; x*y=1; size=3`, "attachment", map[string]string{"name": "При", "size": "3"}},
		{`attachment; name*=''100%25%zz`, "attachment", map[string]string{"name": "100%%zz"}},
		{`attachment; filename="=?iso-8859-1?q?R=E9sum=E9.pdf?="`, "attachment", map[string]string{"filename": "Résumé.pdf"}},
		{`inline`, "inline", nil},
		{`image/png; name="a;b.png"; =x; y`, "image/png", map[string]string{"name": "a;b.png"}},
	}
	for _, tc := range tests {
		value, params, _, ok := parseParams(tc.in)
		if !ok || value != tc.value || !equalMaps(params, tc.params) {
			t.Errorf("parseParams(%q) = %q %v %v, want %q %v", tc.in, value, params, ok, tc.value, tc.params)
		}
	}
	for _, bad := range []string{"", "a b", "text/", "/plain", "t\xe9xt/plain"} {
		if value, _, _, ok := parseParams(bad); ok {
			t.Errorf("parseParams(%q) accepted as %q", bad, value)
		}
	}
}

func TestRealWorldShapes(t *testing.T) {
	// Apple Mail style: mixed → (alternative → (plain, related → (html, image))), pdf.
	apple := crlf(`From: Eve <eve@example.net>
To: bob@example.com
Subject: photos
Mime-Version: 1.0 (Mac OS X Mail 16.0)
Content-Type: multipart/mixed; boundary="Apple-Mail=_M1"

--Apple-Mail=_M1
Content-Type: multipart/alternative; boundary="Apple-Mail=_A2"

--Apple-Mail=_A2
Content-Transfer-Encoding: 7bit
Content-Type: text/plain; charset=us-ascii

see the photo
--Apple-Mail=_A2
Content-Type: multipart/related; type="text/html"; boundary="Apple-Mail=_R3"

--Apple-Mail=_R3
Content-Type: text/html; charset=us-ascii

<html><img src="cid:p1"></html>
--Apple-Mail=_R3
Content-Disposition: inline; filename=p.jpg
Content-Type: image/jpeg; name="p.jpg"
Content-Transfer-Encoding: base64
Content-Id: <p1>

/9j/4AAQSkZJRg==
--Apple-Mail=_R3--

--Apple-Mail=_A2--

--Apple-Mail=_M1
Content-Disposition: attachment; filename=a.pdf
Content-Type: application/pdf; name="a.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQ=
--Apple-Mail=_M1--
`)
	p := mustParse(t, apple, Options{})
	checkParts(t, apple, p, []want{
		{sec: "", typ: "multipart/mixed", nparts: 2, body: apple[strings.Index(apple, "--Apple-Mail=_M1\r\n"):]},
		{sec: "1", typ: "multipart/alternative", nparts: 2, body: apple[strings.Index(apple, "--Apple-Mail=_A2\r\n") : strings.Index(apple, "--Apple-Mail=_A2--")+len("--Apple-Mail=_A2--\r\n")]},
		{sec: "1.1", typ: "text/plain", body: "see the photo", lines: 1},
		{sec: "1.2", typ: "multipart/related", params: map[string]string{"type": "text/html", "boundary": "Apple-Mail=_R3"}, nparts: 2,
			body: apple[strings.Index(apple, "--Apple-Mail=_R3\r\n") : strings.Index(apple, "--Apple-Mail=_R3--")+len("--Apple-Mail=_R3--\r\n")]},
		{sec: "1.2.1", typ: "text/html", body: `<html><img src="cid:p1"></html>`, lines: 1},
		{sec: "1.2.2", typ: "image/jpeg", encoding: "base64", body: "/9j/4AAQSkZJRg==",
			mime: str("Content-Disposition: inline; filename=p.jpg\r\nContent-Type: image/jpeg; name=\"p.jpg\"\r\nContent-Transfer-Encoding: base64\r\nContent-Id: <p1>\r\n\r\n")},
		{sec: "2", typ: "application/pdf", encoding: "base64", body: "JVBERi0xLjQ="},
	})
	if img := section(p.Structure, "1.2.2"); img.Id != "<p1>" || img.Disposition != "inline" {
		t.Errorf("image id %q disposition %q", img.Id, img.Disposition)
	}
	if p.SearchBody != "see the photo\n<html><img src=\"cid:p1\"></html>" {
		t.Errorf("SearchBody %q", p.SearchBody)
	}

	// A delivery status notification (RFC 3464): report → text, delivery-status, rfc822-headers.
	dsn := crlf(`From: MAILER-DAEMON@mail.example.com
To: alice@example.org
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status;
	boundary="7D1B4.1732"

--7D1B4.1732
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered.
--7D1B4.1732
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.com

Final-Recipient: rfc822; nobody@example.com
Action: failed
Status: 5.1.1
--7D1B4.1732
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: alice@example.org
Subject: hello
--7D1B4.1732--
`)
	p = mustParse(t, dsn, Options{})
	checkParts(t, dsn, p, []want{
		{sec: "", typ: "multipart/report", params: map[string]string{"report-type": "delivery-status", "boundary": "7D1B4.1732"}, nparts: 3,
			body: dsn[strings.Index(dsn, "--7D1B4.1732\r\n"):]},
		{sec: "1", typ: "text/plain", body: "I'm sorry to have to inform you that your message could not\r\nbe delivered.", lines: 2},
		{sec: "2", typ: "message/delivery-status", body: crlf("Reporting-MTA: dns; mail.example.com\n\nFinal-Recipient: rfc822; nobody@example.com\nAction: failed\nStatus: 5.1.1")},
		{sec: "3", typ: "text/rfc822-headers", body: crlf("From: alice@example.org\nSubject: hello"), lines: 2},
	})
	if d := section(p.Structure, "2").Description; d != "Delivery report" {
		t.Errorf("description %q", d)
	}
}

func TestDecodeTransfer(t *testing.T) {
	tests := []struct{ enc, in, want string }{
		{"quoted-printable", "", ""},
		{"quoted-printable", "plain", "plain"},
		{"quoted-printable", "a=3Db=3db", "a=b=b"},
		{"quoted-printable", "soft=\r\nbreak", "softbreak"},
		{"quoted-printable", "soft= \t\nbreak", "softbreak"},
		{"quoted-printable", "trailing  \t\r\nspace \n", "trailing\r\nspace\r\n"},
		{"quoted-printable", "kept=20\nkept =20 \n", "kept \r\nkept  \r\n"},
		{"quoted-printable", "bad=ZZ=4", "bad=ZZ=4"},
		{"quoted-printable", "end=", "end"},
		{"quoted-printable", "a=\r\n=\r\nb", "ab"},
		{"quoted-printable", "=C3=A9t=C3=A9", "été"},
		{"base64", "", ""},
		{"base64", "aGVsbG8=", "hello"},
		{"base64", "aGVs\r\nbG8=\r\n", "hello"},
		{"base64", "aGVsbG8", "hello"},
		{"base64", "aGVs*bG8!", "hello"},
		{"base64", "aGk=aGk=", "hihi"},
		{"base64", "aA", "h"},
		{"8bit", "as =3D is", "as =3D is"},
	}
	for _, tc := range tests {
		if got := string(decodeTransfer(tc.enc, []byte(tc.in))); got != tc.want {
			t.Errorf("decodeTransfer(%s, %q) = %q, want %q", tc.enc, tc.in, got, tc.want)
		}
	}
}
