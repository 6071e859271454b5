package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

var (
	testNow     = time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
	testArrival = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	testRetry   = time.Date(2026, 3, 6, 10, 0, 0, 0, time.UTC)
)

const testOriginal = "Received: from client.example.com\r\n" +
	"\tby mx.example.com; Sun, 01 Mar 2026 10:00:00 +0000\r\n" +
	"From: Alice <alice@example.com>\r\n" +
	"To: bob@example.net, carol@example.org\r\n" +
	"Subject: Lunch\r\n" +
	"Message-ID: <orig-1@example.com>\r\n" +
	"\r\n" +
	"SECRET BODY LINE\r\n"

func testReport() Report {
	return Report{
		ReportingMTA: "mx.example.com",
		From:         "MAILER-DAEMON@mx.example.com",
		To:           "alice@example.com",
		QueueID:      "Q123ABC",
		ArrivalDate:  testArrival,
		Now:          testNow,
		Recipients: []Recipient{{
			Address:     "bob@example.net",
			Action:      ActionFailed,
			Status:      "5.1.1",
			RemoteMTA:   "mx.example.net",
			Diagnostic:  "550 5.1.1 <bob@example.net>: no such user",
			LastAttempt: testArrival.Add(time.Minute),
		}, {
			Address:           "carol@example.org",
			OriginalRecipient: "Carol@Example.org",
			Action:            ActionFailed,
			Status:            "5.4.4",
			Diagnostic:        "no MX or A record for example.org",
		}},
	}
}

// dsnParts is a built DSN parsed back with go-message.
type dsnParts struct {
	raw    []byte
	header gomail.Header
	parts  []part
}

type part struct {
	header message.Header
	body   []byte // decoded
}

func build(t *testing.T, r Report, original io.Reader, maxHeader int) *dsnParts {
	t.Helper()
	raw, err := Build(r, original, maxHeader)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	checkLines(t, raw)
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parsing the DSN: %v\n%s", err, raw)
	}
	d := &dsnParts{raw: raw, header: gomail.Header{Header: e.Header}}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatalf("DSN is not multipart:\n%s", raw)
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading part %d: %v\n%s", len(d.parts), err, raw)
		}
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("reading part %d body: %v", len(d.parts), err)
		}
		d.parts = append(d.parts, part{p.Header, body})
	}
	return d
}

// checkLines checks RFC 5322 §2.1.1 and §2.3 on the whole message: CRLF
// only, as line endings, and no line over 998 octets.
func checkLines(t *testing.T, raw []byte) {
	t.Helper()
	if !bytes.HasSuffix(raw, []byte("\r\n")) {
		t.Errorf("message does not end with CRLF")
	}
	for i, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\r\n")), []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Errorf("line %d has a bare CR or LF: %q", i+1, line)
		}
		if len(line) > 998 {
			t.Errorf("line %d is %d octets", i+1, len(line))
		}
		if bytes.IndexByte(line, 0) >= 0 {
			t.Errorf("line %d has NUL", i+1)
		}
	}
}

// statusBlocks parses a message/delivery-status body into its per-message
// fields and per-recipient blocks.
func statusBlocks(t *testing.T, body []byte) (perMessage textproto.Header, recipients []textproto.Header) {
	t.Helper()
	s := string(body)
	if !strings.HasSuffix(s, "\r\n") {
		t.Fatalf("delivery-status does not end with CRLF: %q", s)
	}
	blocks := strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n\r\n")
	for i, b := range blocks {
		h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(b + "\r\n\r\n")))
		if err != nil {
			t.Fatalf("delivery-status block %d: %v\n%q", i, err, b)
		}
		if i == 0 {
			perMessage = h
		} else {
			recipients = append(recipients, h)
		}
	}
	return perMessage, recipients
}

func fieldNames(h textproto.Header) []string {
	var names []string
	for f := h.Fields(); f.Next(); {
		names = append(names, f.Key())
	}
	slices.Sort(names)
	return names
}

func TestBuildFailed(t *testing.T) {
	d := build(t, testReport(), strings.NewReader(testOriginal), 0)

	// Top-level header.
	from, err := d.header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "Mail Delivery System" || from[0].Address != "MAILER-DAEMON@mx.example.com" {
		t.Errorf("From = %v, %v", from, err)
	}
	to, err := d.header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Address != "alice@example.com" {
		t.Errorf("To = %v, %v", to, err)
	}
	if s, _ := d.header.Subject(); s != SubjectFailed {
		t.Errorf("Subject = %q", s)
	}
	if date, err := d.header.Date(); err != nil || !date.Equal(testNow) {
		t.Errorf("Date = %v, %v", date, err)
	}
	if id, err := d.header.MessageID(); err != nil || !strings.HasSuffix(id, "@mx.example.com") || len(id) < 20 {
		t.Errorf("Message-ID = %q, %v", id, err)
	}
	if v := d.header.Get("MIME-Version"); v != "1.0" {
		t.Errorf("MIME-Version = %q", v)
	}
	if v := d.header.Get("Auto-Submitted"); v != "auto-replied" {
		t.Errorf("Auto-Submitted = %q", v)
	}
	mt, params, err := d.header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" || params["boundary"] == "" {
		t.Errorf("Content-Type = %q %v %v", mt, params, err)
	}
	if got, want := fieldNames(d.header.Header.Header), []string{"Auto-Submitted", "Content-Type", "Date", "From", "Message-Id", "Mime-Version", "Subject", "To"}; !slices.Equal(got, want) {
		t.Errorf("header fields %v, want %v", got, want)
	}

	// The three parts and their types.
	if len(d.parts) != 3 {
		t.Fatalf("%d parts, want 3", len(d.parts))
	}
	wantTypes := []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}
	for i, p := range d.parts {
		mt, params, err := p.header.ContentType()
		if err != nil || mt != wantTypes[i] {
			t.Errorf("part %d Content-Type %q, want %q (%v)", i, mt, wantTypes[i], err)
		}
		if i == 0 && params["charset"] != "utf-8" {
			t.Errorf("text part charset %q", params["charset"])
		}
	}

	// Human-readable part.
	text := unwrap(d.parts[0].body)
	for _, want := range []string{
		"This is the mail system at host mx.example.com.",
		"could not be delivered",
		"bob@example.net",
		"the recipient's address does not exist",
		"The mail server mx.example.net answered: 550 5.1.1 <bob@example.net>: no such user",
		"carol@example.org",
		"no mail server could be found",
		"Details: no MX or A record for example.org",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text part lacks %q:\n%s", want, text)
		}
	}

	// Machine-readable part: every field, spelled as in RFC 3464.
	status := d.parts[1].body
	pm, rcpts := statusBlocks(t, status)
	wantPM := map[string]string{
		"Reporting-Mta":          "dns; mx.example.com",
		"X-Mailcluster-Queue-Id": "Q123ABC",
		"Arrival-Date":           "Sun, 01 Mar 2026 10:00:00 +0000",
	}
	checkFields(t, "per-message", pm, wantPM)
	if len(rcpts) != 2 {
		t.Fatalf("%d recipient blocks, want 2:\n%s", len(rcpts), status)
	}
	checkFields(t, "recipient 1", rcpts[0], map[string]string{
		"Final-Recipient":   "rfc822; bob@example.net",
		"Action":            "failed",
		"Status":            "5.1.1",
		"Remote-Mta":        "dns; mx.example.net",
		"Diagnostic-Code":   "smtp; 550 5.1.1 <bob@example.net>: no such user",
		"Last-Attempt-Date": "Sun, 01 Mar 2026 10:01:00 +0000",
	})
	checkFields(t, "recipient 2", rcpts[1], map[string]string{
		"Final-Recipient":    "rfc822; carol@example.org",
		"Original-Recipient": "rfc822; Carol@Example.org",
		"Action":             "failed",
		"Status":             "5.4.4",
		"Diagnostic-Code":    "X-Mailcluster; no MX or A record for example.org",
	})
	for _, spelled := range []string{"Reporting-MTA: ", "\r\nX-Mailcluster-Queue-ID: ", "\r\nRemote-MTA: ", "\r\nFinal-Recipient: "} {
		if !bytes.Contains(status, []byte(spelled)) {
			t.Errorf("delivery-status lacks %q", spelled)
		}
	}

	// The original header section, without the body.
	hdr := string(d.parts[2].body)
	wantHdr := testOriginal[:strings.Index(testOriginal, "\r\n\r\n")+2]
	if hdr != wantHdr {
		t.Errorf("headers part:\n%q\nwant\n%q", hdr, wantHdr)
	}
	if strings.Contains(string(d.raw), "SECRET BODY") {
		t.Error("the original body leaked into the DSN")
	}
	if cte := d.parts[2].header.Get("Content-Transfer-Encoding"); cte != "7bit" {
		t.Errorf("clean ASCII header copied with CTE %q", cte)
	}
}

// unwrap undoes the text part's line wrapping: every run of white space
// becomes one space.
func unwrap(text []byte) string {
	return strings.Join(strings.Fields(string(text)), " ")
}

// checkFields checks that h has exactly the fields of want, once each,
// with these (unfolded) values.
func checkFields(t *testing.T, what string, h textproto.Header, want map[string]string) {
	t.Helper()
	if got, wantNames := fieldNames(h), slices.Sorted(maps.Keys(want)); !slices.Equal(got, wantNames) {
		t.Errorf("%s: fields %v, want %v", what, got, wantNames)
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

func TestBuildDelayed(t *testing.T) {
	r := testReport()
	r.Recipients = []Recipient{{
		Address:        "dave@example.org",
		Action:         ActionDelayed,
		Status:         "4.4.1",
		Diagnostic:     "connect to mx.example.org[192.0.2.1]:25: Connection timed out",
		LastAttempt:    testNow.Add(-time.Minute),
		WillRetryUntil: testRetry,
	}}
	d := build(t, r, strings.NewReader(testOriginal), 0)
	if s, _ := d.header.Subject(); s != SubjectDelayed {
		t.Errorf("Subject = %q, want %q", s, SubjectDelayed)
	}
	_, rcpts := statusBlocks(t, d.parts[1].body)
	checkFields(t, "delayed", rcpts[0], map[string]string{
		"Final-Recipient":   "rfc822; dave@example.org",
		"Action":            "delayed",
		"Status":            "4.4.1",
		"Diagnostic-Code":   "X-Mailcluster; connect to mx.example.org[192.0.2.1]:25: Connection timed out",
		"Last-Attempt-Date": "Wed, 04 Mar 2026 05:05:07 +0100",
		"Will-Retry-Until":  "Fri, 06 Mar 2026 10:00:00 +0000",
	})
	text := unwrap(d.parts[0].body)
	if !strings.Contains(text, "has not yet been delivered") || !strings.Contains(text, "do not need to send it again") {
		t.Errorf("delayed text:\n%s", text)
	}
	if strings.Contains(text, "could not be delivered") {
		t.Errorf("delayed DSN says the message failed:\n%s", text)
	}

	// One failed recipient among delayed ones makes it a bounce; a
	// WillRetryUntil on a failed recipient is ignored.
	failed := testReport().Recipients[0]
	failed.WillRetryUntil = testRetry
	r.Recipients = append(r.Recipients, failed)
	d = build(t, r, nil, 0)
	if s, _ := d.header.Subject(); s != SubjectFailed {
		t.Errorf("mixed: Subject = %q, want %q", s, SubjectFailed)
	}
	if len(d.parts) != 2 {
		t.Errorf("nil original: %d parts, want 2", len(d.parts))
	}
	_, rcpts = statusBlocks(t, d.parts[1].body)
	if len(rcpts) != 2 || rcpts[1].Has("Will-Retry-Until") {
		t.Errorf("mixed: recipient blocks %v", rcpts)
	}
	text = unwrap(d.parts[0].body)
	if !strings.Contains(text, "could not be delivered") || !strings.Contains(text, "has not yet been delivered") {
		t.Errorf("mixed text:\n%s", text)
	}
}

func TestMessageIDUnique(t *testing.T) {
	seen := make(map[string]bool)
	r := testReport()
	r.ReportingMTA = "mx.example.com." // the trailing dot is dropped
	for range 20 {
		d := build(t, r, nil, 0)
		id, _ := d.header.MessageID()
		if !strings.HasSuffix(id, "@mx.example.com") {
			t.Fatalf("Message-ID %q", id)
		}
		if seen[id] {
			t.Fatalf("Message-ID %q repeated", id)
		}
		seen[id] = true
	}
}

func TestZeroNow(t *testing.T) {
	r := testReport()
	r.Now = time.Time{}
	before := time.Now().Add(-time.Second)
	d := build(t, r, nil, 0)
	if date, err := d.header.Date(); err != nil || date.Before(before) || date.After(time.Now().Add(time.Second)) {
		t.Errorf("zero Now: Date = %v, %v", date, err)
	}
}

// TestHostileInput feeds remote-controlled fields that try to add header
// fields, recipients and MIME parts.
func TestHostileInput(t *testing.T) {
	inject := "\r\nX-Injected: yes\r\n\r\nFinal-Recipient: rfc822; evil@example.org\r\n" +
		"--=_boundary\r\nContent-Type: text/html\r\n\r\n<b>evil</b>\r\n--=_boundary--\r\n"
	r := testReport()
	r.QueueID = "Q1" + inject
	r.Recipients = []Recipient{{
		Address:    "bob@example.net" + inject,
		Action:     ActionFailed,
		Status:     "5.7.1",
		RemoteMTA:  "mx.example.net" + inject,
		Diagnostic: "550 5.7.1 go away" + inject + "\x00nul\rcr\nlf\u202eoverride\u2028sep" + strings.Repeat(" long words", 1000),
	}}
	d := build(t, r, strings.NewReader(testOriginal), 0)

	if d.header.Has("X-Injected") || len(d.parts) != 3 {
		t.Fatalf("injection: X-Injected %v, %d parts", d.header.Has("X-Injected"), len(d.parts))
	}
	for i, p := range d.parts {
		if p.header.Has("X-Injected") {
			t.Errorf("part %d has X-Injected", i)
		}
	}
	if mt, _, _ := d.parts[0].header.ContentType(); mt != "text/plain" {
		t.Errorf("first part is %s", mt)
	}

	status := d.parts[1].body
	for _, c := range status {
		if c >= 0x80 {
			t.Fatalf("delivery-status is not 7-bit:\n%s", status)
		}
	}
	pm, rcpts := statusBlocks(t, status)
	if got := fieldNames(pm); !slices.Equal(got, []string{"Arrival-Date", "Reporting-Mta", "X-Mailcluster-Queue-Id"}) {
		t.Errorf("per-message fields %v", got)
	}
	if len(rcpts) != 1 {
		t.Fatalf("%d recipient blocks, want 1:\n%s", len(rcpts), status)
	}
	if got := fieldNames(rcpts[0]); !slices.Equal(got, []string{"Action", "Diagnostic-Code", "Final-Recipient", "Remote-Mta", "Status"}) {
		t.Errorf("recipient fields %v", got)
	}
	diag := rcpts[0].Get("Diagnostic-Code")
	if !strings.HasPrefix(diag, "smtp; 550 5.7.1 go away X-Injected: yes Final-Recipient: rfc822; evil@example.org --=_boundary Content-Type: text/html <b>evil</b> --=_boundary-- nul cr lf override sep long words long words") {
		t.Errorf("Diagnostic-Code = %q", diag)
	}
	if len(diag) > maxDiagnostic+len("smtp; ") || !strings.HasSuffix(diag, "...") {
		t.Errorf("Diagnostic-Code is %d octets, want it cut to %d and marked", len(diag), maxDiagnostic)
	}
	if fr := rcpts[0].Get("Final-Recipient"); !strings.HasPrefix(fr, "rfc822; bob@example.net X-Injected: yes") {
		t.Errorf("Final-Recipient = %q", fr)
	}
	// The long value is folded at spaces: no line of the part is longer
	// than 78 octets, since no word is.
	for _, line := range strings.Split(string(status), "\r\n") {
		if len(line) > foldWidth {
			t.Errorf("delivery-status line of %d octets: %q", len(line), line)
		}
	}

	text := unwrap(d.parts[0].body)
	if strings.ContainsAny(text, "\x00\u202e\u2028") {
		t.Errorf("text part has control or format characters")
	}
	if !strings.Contains(text, "answered: 550 5.7.1 go away X-Injected: yes Final-Recipient:") {
		t.Errorf("text part does not show the diagnostic as text:\n%s", text)
	}
	for _, line := range strings.Split(string(d.parts[0].body), "\r\n") {
		if strings.HasPrefix(line, "X-Injected") || strings.HasPrefix(line, "--") {
			t.Errorf("a line of the text part starts with injected text: %q", line)
		}
	}
}

// TestHugeWord: a diagnostic with no space to fold at is cut so its line
// stays under 998 octets.
func TestHugeWord(t *testing.T) {
	r := testReport()
	r.Recipients[0].Diagnostic = "550-" + strings.Repeat("x", 10000)
	r.Recipients[0].Address = strings.Repeat("y", 5000) + "@example.net"
	d := build(t, r, nil, 0)
	_, rcpts := statusBlocks(t, d.parts[1].body)
	if diag := rcpts[0].Get("Diagnostic-Code"); !strings.HasPrefix(diag, "smtp; 550-xxx") || !strings.HasSuffix(diag, "...") {
		t.Errorf("Diagnostic-Code = %q", diag)
	}
	if fr := rcpts[0].Get("Final-Recipient"); !strings.HasPrefix(fr, "rfc822; yyy") || len(fr) > maxAddress+len("rfc822; ") {
		t.Errorf("Final-Recipient is %d octets", len(fr))
	}
}

func TestNonASCII(t *testing.T) {
	r := testReport()
	r.To = "jörg@bücher.example"
	r.Recipients = []Recipient{{
		Address:    "zoë+tag=1@exämple.org",
		Action:     ActionFailed,
		Status:     "5.1.1",
		RemoteMTA:  "mx.exämple.org",
		Diagnostic: "550 5.1.1 utilisateur inconnu: zoë",
	}, {
		Address: "plain+tag=1@example.org",
		Action:  ActionFailed,
		Status:  "5.2.2",
	}}
	original := "From: Jörg <jörg@bücher.example>\r\nSubject: Grüße\r\n\r\nbody\r\n"
	d := build(t, r, strings.NewReader(original), 0)

	to, err := d.header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Address != "jörg@bücher.example" {
		t.Errorf("To = %v, %v", to, err)
	}
	status := d.parts[1].body
	for _, c := range status {
		if c >= 0x80 {
			t.Fatalf("delivery-status is not 7-bit:\n%s", status)
		}
	}
	_, rcpts := statusBlocks(t, status)
	checkFields(t, "utf-8 recipient", rcpts[0], map[string]string{
		"Final-Recipient": `utf-8; zo\x{EB}\x{2B}tag\x{3D}1@ex\x{E4}mple.org`,
		"Action":          "failed",
		"Status":          "5.1.1",
		"Remote-Mta":      `dns; mx.ex\x{E4}mple.org`,
		"Diagnostic-Code": `smtp; 550 5.1.1 utilisateur inconnu: zo\x{EB}`,
	})
	if got := rcpts[1].Get("Final-Recipient"); got != "rfc822; plain+tag=1@example.org" {
		t.Errorf("ASCII recipient: Final-Recipient = %q", got)
	}
	text := unwrap(d.parts[0].body)
	if !strings.Contains(text, "zoë+tag=1@exämple.org") || !strings.Contains(text, "utilisateur inconnu: zoë") {
		t.Errorf("text part does not show UTF-8:\n%s", text)
	}
	if cte := d.parts[0].header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Errorf("text part CTE %q", cte)
	}
	// 8-bit original header: quoted-printable, decoded back intact.
	if cte := d.parts[2].header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Errorf("8-bit header part CTE %q", cte)
	}
	if got, want := string(d.parts[2].body), "From: Jörg <jörg@bücher.example>\r\nSubject: Grüße\r\n"; got != want {
		t.Errorf("8-bit header part %q, want %q", got, want)
	}
}

// countingReader counts what is read from r, and fails once 1 MiB has
// been read so that a Build that reads too far fails instead of hanging.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n > 1<<20 {
		return 0, errors.New("read 1 MiB of the original")
	}
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type repeatReader struct{ s string }

func (r repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r.s)
	}
	return n, nil
}

func TestOriginalHeaderTruncation(t *testing.T) {
	line := "X-Filler: " + strings.Repeat("a", 88) + "\r\n" // 100 octets
	const max = 1050

	// An endless header: Build stops at the limit, at a line boundary.
	cr := &countingReader{r: repeatReader{line}}
	d := build(t, testReport(), cr, max)
	hdr := d.parts[2].body
	if len(hdr) > max || len(hdr) != 1000 {
		t.Errorf("copied %d octets of header, want the 10 whole lines (1000) that fit in %d", len(hdr), max)
	}
	if want := strings.Repeat(line, 10); string(hdr) != want {
		t.Errorf("header part is not whole lines:\n%q", hdr)
	}
	if cr.n > 64<<10 {
		t.Errorf("read %d octets of the original for a %d-octet limit", cr.n, max)
	}

	// One endless line: nothing fits, and reading stops.
	cr = &countingReader{r: io.MultiReader(strings.NewReader("Subject: "), repeatReader{"z"})}
	d = build(t, testReport(), cr, max)
	if len(d.parts) != 3 || len(d.parts[2].body) != 0 {
		t.Errorf("endless first line: header part %q", d.parts[2].body)
	}
	if cr.n > 64<<10 {
		t.Errorf("read %d octets of an endless line for a %d-octet limit", cr.n, max)
	}

	// A huge body is not read past the header.
	cr = &countingReader{r: io.MultiReader(strings.NewReader(testOriginal), repeatReader{"body body\r\n"})}
	d = build(t, testReport(), cr, 0)
	if !strings.HasPrefix(string(d.parts[2].body), "Received: ") || strings.Contains(string(d.parts[2].body), "body") {
		t.Errorf("header part %q", d.parts[2].body)
	}
	if cr.n > 64<<10 {
		t.Errorf("read %d octets of a message whose header is %d", cr.n, len(testOriginal))
	}

	// maxHeader <= 0 is DefaultMaxHeader.
	big := strings.Repeat(line, DefaultMaxHeader/100+50) + "\r\nbody\r\n"
	d = build(t, testReport(), strings.NewReader(big), 0)
	if n := len(d.parts[2].body); n > DefaultMaxHeader || n < DefaultMaxHeader-100 {
		t.Errorf("default limit: copied %d octets", n)
	}
}

func TestOriginalHeaderNormalised(t *testing.T) {
	for name, tc := range map[string]struct{ in, want, cte string }{
		"LF endings":       {"From: a@example.com\nSubject: x\n\nbody\n", "From: a@example.com\r\nSubject: x\r\n", "7bit"},
		"bare CR":          {"Subject: a\rb\r\n\r\nbody", "Subject: a b\r\n", "7bit"},
		"no body":          {"Subject: x\r\nFrom: a@example.com", "Subject: x\r\nFrom: a@example.com\r\n", "7bit"},
		"empty":            {"", "", "7bit"},
		"NUL":              {"Subject: a\x00b\r\n\r\n", "Subject: a\x00b\r\n", "quoted-printable"},
		"long line":        {"Subject: " + strings.Repeat("w", 1200) + "\r\n\r\n", "Subject: " + strings.Repeat("w", 1200) + "\r\n", "quoted-printable"},
		"boundary-like":    {"X-A: 1\r\n--=_0123\r\n\r\n", "X-A: 1\r\n--=_0123\r\n", "7bit"},
		"invalid 8-bit":    {"Subject: \xff\xfe\r\n\r\n", "Subject: \xff\xfe\r\n", "quoted-printable"},
		"starts with CRLF": {"\r\nbody only\r\n", "", "7bit"},
	} {
		d := build(t, testReport(), strings.NewReader(tc.in), 0)
		if len(d.parts) != 3 {
			t.Errorf("%s: %d parts", name, len(d.parts))
			continue
		}
		if got := string(d.parts[2].body); got != tc.want {
			t.Errorf("%s: header part %q, want %q", name, got, tc.want)
		}
		if cte := d.parts[2].header.Get("Content-Transfer-Encoding"); cte != tc.cte {
			t.Errorf("%s: CTE %q, want %q", name, cte, tc.cte)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestBuildErrors(t *testing.T) {
	for name, mod := range map[string]func(*Report){
		"bad ReportingMTA":     func(r *Report) { r.ReportingMTA = "mx example com" },
		"ReportingMTA CRLF":    func(r *Report) { r.ReportingMTA = "mx.example.com\r\nX: y" },
		"empty ReportingMTA":   func(r *Report) { r.ReportingMTA = "" },
		"To CRLF":              func(r *Report) { r.To = "alice@example.com\r\nBcc: all@example.com" },
		"To not an address":    func(r *Report) { r.To = "alice" },
		"To too long":          func(r *Report) { r.To = strings.Repeat("a", 600) + "@example.com" },
		"From empty":           func(r *Report) { r.From = "" },
		"From NUL":             func(r *Report) { r.From = "MAILER-DAEMON@mx.example.com\x00" },
		"no recipients":        func(r *Report) { r.Recipients = nil },
		"bad action":           func(r *Report) { r.Recipients[0].Action = "delivered" },
		"empty status":         func(r *Report) { r.Recipients[0].Status = "" },
		"bad status":           func(r *Report) { r.Recipients[0].Status = "5.1" },
		"status injection":     func(r *Report) { r.Recipients[0].Status = "5.1.1\r\nX: y" },
		"status too long":      func(r *Report) { r.Recipients[0].Status = "5.1000.1" },
		"status not digits":    func(r *Report) { r.Recipients[0].Status = "5.a.1" },
		"success status":       func(r *Report) { r.Recipients[0].Status = "2.0.0" },
		"delayed permanent":    func(r *Report) { r.Recipients[0].Action = ActionDelayed },
		"empty address":        func(r *Report) { r.Recipients[1].Address = " \r\n" },
		"quoted local part To": func(r *Report) { r.To = `"alice smith"@example.com` },
	} {
		r := testReport()
		mod(&r)
		if _, err := Build(r, nil, 0); err == nil {
			t.Errorf("%s: Build succeeded", name)
		}
	}

	r := testReport()
	r.To = ""
	if _, err := Build(r, nil, 0); !errors.Is(err, ErrNullSender) {
		t.Errorf("null sender: err = %v, want ErrNullSender", err)
	}
	if _, err := Build(testReport(), failingReader{}, 0); err == nil {
		t.Error("a failing original reader: Build succeeded")
	}
	// Failed with a 4.x.x code is fine (a temporary error that expired);
	// the RFC 3463 ABNF allows leading zeros.
	for _, st := range []string{"4.4.7", "5.01.001", "5.7.26"} {
		r = testReport()
		r.Recipients[0].Status = st
		if _, err := Build(r, nil, 0); err != nil {
			t.Errorf("failed with %s: %v", st, err)
		}
	}
}

func TestCleanText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"  a \r\n\tb  ", 100, "a b"},
		{"a\x00\x7f\u0085b", 100, "a b"},
		{"\xffa", 100, "\ufffda"},
		{"abcdefghij", 10, "abcdefghij"},
		{"abcdefghijk", 10, "abcdefg..."},
		{"ééééé", 8, "éé..."}, // cut at a rune boundary
		{"", 10, ""},
	} {
		if got := cleanText(tc.in, tc.max); got != tc.want {
			t.Errorf("cleanText(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
	if got := asciiEscape("aé", 100); got != `a\x{E9}` {
		t.Errorf("asciiEscape = %q", got)
	}
	if got := asciiEscape(strings.Repeat("é", 10), 20); got != `\x{E9}\x{E9}...` {
		t.Errorf("asciiEscape cut = %q", got)
	}
	if got := utf8AddrXtext("a b+c=d\\e😀@x", 100); got != `a\x{20}b\x{2B}c\x{3D}d\x{5C}e\x{1F600}@x` {
		t.Errorf("utf8AddrXtext = %q", got)
	}
}

// FuzzBuild checks the invariants for any remote-controlled input: the DSN
// parses, has its three parts and one recipient block with the expected
// fields, and keeps the line rules.
func FuzzBuild(f *testing.F) {
	f.Add("bob@example.net", "mx.example.net", "550 5.1.1 no such user", testOriginal)
	f.Add("a\r\nb@x", "h\x00", "\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n", "X: \xff\r\n\r\n")
	f.Add("zoë@exämple.org", "", strings.Repeat("é ", 600), strings.Repeat("Y: z\n", 100))
	f.Fuzz(func(t *testing.T, addr, remote, diag, original string) {
		r := testReport()
		r.Recipients = []Recipient{{Address: addr, Action: ActionFailed, Status: "5.0.0", RemoteMTA: remote, Diagnostic: diag}}
		raw, err := Build(r, strings.NewReader(original), 500)
		if cleanText(addr, maxAddress) == "" {
			if err == nil {
				t.Fatal("empty address accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		checkLines(t, raw)
		d := build(t, r, strings.NewReader(original), 500)
		if len(d.parts) != 3 {
			t.Fatalf("%d parts", len(d.parts))
		}
		if len(d.parts[2].body) > 500 {
			t.Fatalf("header part of %d octets", len(d.parts[2].body))
		}
		_, rcpts := statusBlocks(t, d.parts[1].body)
		if len(rcpts) != 1 {
			t.Fatalf("%d recipient blocks", len(rcpts))
		}
		for _, name := range fieldNames(rcpts[0]) {
			switch name {
			case "Final-Recipient", "Action", "Status", "Remote-Mta", "Diagnostic-Code":
			default:
				t.Fatalf("unexpected field %q", name)
			}
		}
		if got := rcpts[0].Get("Action"); got != "failed" {
			t.Fatalf("Action = %q", got)
		}
	})
}
