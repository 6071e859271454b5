package message

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"runtime"
	"strings"
	"testing"
)

// message4K is a typical 4 KiB message: a relay trace, a multipart/alternative
// with quoted-printable text and HTML.
func message4K() []byte {
	var b strings.Builder
	b.WriteString(crlf(`Return-Path: <news@shop.example>
Received: from mx1.shop.example (mx1.shop.example [198.51.100.7])
	by mail.example.com with ESMTPS id 7C1D2 for <bob@example.com>;
	Tue, 24 Nov 2026 09:15:02 +0000
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=shop.example; s=s1;
	h=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;
	b=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR
Date: Tue, 24 Nov 2026 10:15:00 +0100
From: =?UTF-8?Q?Shop_B=C3=BCcher?= <news@shop.example>
To: Bob <bob@example.com>
Subject: =?UTF-8?B?VW5zZXJlIEFuZ2Vib3RlIGRlciBXb2NoZQ==?=
Message-ID: <20261124091500.7C1D2@shop.example>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1_5f0e"

--b1_5f0e
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

`))
	for b.Len() < 2200 {
		b.WriteString("Sch=C3=B6ne Angebote f=C3=BCr Sie: B=C3=BCcher, Kalender und mehr.\r\n")
	}
	b.WriteString(crlf("\n--b1_5f0e\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"))
	for b.Len() < 4000 {
		b.WriteString("<p>Sch=C3=B6ne Angebote f=C3=BCr Sie</p>\r\n")
	}
	b.WriteString("\r\n--b1_5f0e--\r\n")
	return []byte(b.String())
}

// message1M is a short text with a 1 MiB base64 attachment.
func message1M() []byte {
	bin := make([]byte, 1<<20)
	rand.Read(bin)
	enc := base64.StdEncoding.EncodeToString(bin)
	var b strings.Builder
	b.WriteString(crlf("From: a@example.org\nTo: b@example.com\nSubject: report\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain\n\nsee attachment\n--zz\nContent-Type: application/pdf; name=report.pdf\nContent-Transfer-Encoding: base64\n\n"))
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--zz--\r\n")
	return []byte(b.String())
}

func benchmarkParse(b *testing.B, in []byte) {
	r := bytes.NewReader(in)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(r, int64(len(in)), Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse4K(b *testing.B) { benchmarkParse(b, message4K()) }
func BenchmarkParse1M(b *testing.B) { benchmarkParse(b, message1M()) }

func TestBenchmarkMessages(t *testing.T) {
	p := mustParse(t, string(message4K()), Options{})
	if len(p.Structure.Parts) != 2 || !strings.Contains(p.SearchBody, "Schöne Angebote für Sie: Bücher") ||
		!strings.Contains(p.SearchBody, "<p>Schöne Angebote für Sie</p>") || p.Envelope.Subject != "Unsere Angebote der Woche" {
		t.Errorf("4K message: %d parts, subject %q, SearchBody %.100q", len(p.Structure.Parts), p.Envelope.Subject, p.SearchBody)
	}
	p = mustParse(t, string(message1M()), Options{})
	if len(p.Structure.Parts) != 2 || p.SearchBody != "see attachment" || p.Structure.Parts[1].Size < 1<<20 {
		t.Errorf("1M message: %d parts, SearchBody %.100q", len(p.Structure.Parts), p.SearchBody)
	}
}

// TestLargeAttachmentMemory checks that a large non-text part is scanned, not
// held: parsing a message with a 4 MiB attachment allocates a small fraction
// of its size (the 64 KiB scanner window plus the parse results).
func TestLargeAttachmentMemory(t *testing.T) {
	in := message1M()
	in = append(in[:len(in)-len("--zz--\r\n")], bytes.Repeat(in[len(in)-len("--zz--\r\n")-78*1000:len(in)-len("--zz--\r\n")], 40)...)
	in = append(in, "--zz--\r\n"...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p, err := Parse(bytes.NewReader(in), int64(len(in)), Options{})
	runtime.ReadMemStats(&after)
	if err != nil || p.Structure.Parts[1].Size < 4<<20 {
		t.Fatalf("parse: %v, %v", err, p)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 512<<10 {
		t.Errorf("parsing a %d-byte message allocated %d bytes", len(in), alloc)
	}
}
