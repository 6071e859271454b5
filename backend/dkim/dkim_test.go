package dkim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"
)

const testMessage = "From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: Lunch\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"List-Unsubscribe: <mailto:leave@example.com>\r\n" +
	"X-Unsigned: anything\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=us-ascii\r\n" +
	"\r\n" +
	"Shall we meet at noon?\r\n" +
	"\r\n" +
	"Alice\r\n"

// verify checks msg with go-msgauth, the DNS answered from k's TXTRecord.
func verify(t *testing.T, k *Key, msg string) *dkim.Verification {
	t.Helper()
	wantName, value := k.TXTRecord()
	lookup := func(name string) ([]string, error) {
		if name != wantName {
			return nil, fmt.Errorf("unexpected TXT lookup %q, want %q", name, wantName)
		}
		return []string{value}, nil
	}
	verifs, err := dkim.VerifyWithOptions(strings.NewReader(msg), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatalf("VerifyWithOptions: %v", err)
	}
	if len(verifs) != 1 {
		t.Fatalf("got %d verifications, want 1", len(verifs))
	}
	return verifs[0]
}

func sign(t *testing.T, k *Key, msg string) string {
	t.Helper()
	sig, err := k.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return sig
}

func TestSignVerify(t *testing.T) {
	for _, alg := range []string{AlgorithmRSA, AlgorithmEd25519} {
		t.Run(alg, func(t *testing.T) {
			gen, err := Generate("Example.COM.", "sel2024", alg)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if gen.Domain != "example.com" || gen.Selector != "sel2024" || gen.Algorithm != alg {
				t.Fatalf("Generate = %+v", gen)
			}
			if alg == AlgorithmRSA {
				if bits := gen.signer.(*rsa.PrivateKey).N.BitLen(); bits != 2048 {
					t.Fatalf("RSA key has %d bits, want 2048", bits)
				}
			}

			// Round trip through PEM: the parsed key must sign verifiably
			// against the generated key's record.
			pemBytes, err := gen.PrivatePEM()
			if err != nil {
				t.Fatalf("PrivatePEM: %v", err)
			}
			if !bytes.HasPrefix(pemBytes, []byte("-----BEGIN PRIVATE KEY-----\n")) {
				t.Fatalf("PrivatePEM is not PKCS#8: %q", pemBytes[:40])
			}
			k, err := Parse("example.com", "sel2024", pemBytes)
			if err != nil {
				t.Fatalf("Parse(PrivatePEM()): %v", err)
			}
			if k.Algorithm != alg {
				t.Fatalf("parsed Algorithm = %q, want %q", k.Algorithm, alg)
			}
			if _, v1 := gen.TXTRecord(); true {
				if _, v2 := k.TXTRecord(); v1 != v2 {
					t.Fatalf("TXT record changed across PEM round trip:\n%s\n%s", v1, v2)
				}
			}

			sig := sign(t, k, testMessage)
			if !strings.HasPrefix(sig, "DKIM-Signature:") || !strings.HasSuffix(sig, "\r\n") {
				t.Fatalf("signature field is not a header field with CRLF: %q", sig)
			}
			for _, line := range strings.Split(strings.TrimSuffix(sig, "\r\n"), "\r\n") {
				if strings.ContainsAny(line, "\r\n") || len(line) > 998 {
					t.Fatalf("bad signature line %q", line)
				}
			}
			signed := sig + testMessage

			v := verify(t, gen, signed)
			if v.Err != nil {
				t.Fatalf("verification failed: %v\n%s", v.Err, signed)
			}
			if v.Domain != "example.com" {
				t.Errorf("verified domain %q", v.Domain)
			}
			var from int
			for _, h := range v.HeaderKeys {
				if strings.EqualFold(h, "from") {
					from++
				}
			}
			if from != 2 {
				t.Errorf("h= lists From %d times, want 2 (over-signed): %v", from, v.HeaderKeys)
			}
			for _, want := range []string{"to", "subject", "date", "message-id", "list-unsubscribe", "content-type", "mime-version"} {
				if !slices.Contains(v.HeaderKeys, want) {
					t.Errorf("h= does not sign %s: %v", want, v.HeaderKeys)
				}
			}
			if slices.Contains(v.HeaderKeys, "x-unsigned") || slices.Contains(v.HeaderKeys, "cc") {
				t.Errorf("h= lists a field it should not: %v", v.HeaderKeys)
			}

			// Relaxed canonicalization tolerates whitespace changes and
			// unsigned fields may change.
			relaxed := strings.Replace(signed, "Subject: Lunch", "Subject:   Lunch ", 1)
			relaxed = strings.Replace(relaxed, "X-Unsigned: anything", "X-Unsigned: changed", 1)
			if v := verify(t, gen, relaxed); v.Err != nil {
				t.Errorf("whitespace change in a relaxed-signed field broke the signature: %v", v.Err)
			}

			// One body byte changed.
			tampered := strings.Replace(signed, "noon", "nOon", 1)
			if v := verify(t, gen, tampered); v.Err == nil {
				t.Error("changed body still verifies")
			}

			// A second From, above or below the signed one.
			sep := strings.Index(signed, "\r\n\r\n") + 2
			below := signed[:sep] + "From: Mallory <mallory@example.org>\r\n" + signed[sep:]
			if v := verify(t, gen, below); v.Err == nil {
				t.Error("second From below the original still verifies")
			}
			above := sig + "From: Mallory <mallory@example.org>\r\n" + testMessage
			if v := verify(t, gen, above); v.Err == nil {
				t.Error("second From above the original still verifies")
			}
			// An added Subject is over-signed too.
			addedSubject := sig + "Subject: Urgent: wire money\r\n" + testMessage
			if v := verify(t, gen, addedSubject); v.Err == nil {
				t.Error("second Subject still verifies")
			}
			// Adding Cc, absent when signing, is not covered: document the
			// limit of signing only present fields.
			addedCc := sig + "Cc: someone@example.org\r\n" + testMessage
			if v := verify(t, gen, addedCc); v.Err != nil {
				t.Errorf("adding an absent, unsigned field broke the signature: %v", v.Err)
			}

			// Another key with the same names does not verify.
			other, err := Generate("example.com", "sel2024", alg)
			if err != nil {
				t.Fatal(err)
			}
			if v := verify(t, other, signed); v.Err == nil {
				t.Error("signature verifies against another key")
			}
		})
	}
}

func TestTXTRecord(t *testing.T) {
	rk, err := Generate("example.com", "s1", AlgorithmRSA)
	if err != nil {
		t.Fatal(err)
	}
	name, value := rk.TXTRecord()
	if name != "s1._domainkey.example.com" {
		t.Errorf("name = %q", name)
	}
	p, ok := strings.CutPrefix(value, "v=DKIM1; k=rsa; p=")
	if !ok {
		t.Fatalf("RSA value = %q", value)
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatalf("p= is not a SubjectPublicKeyInfo: %v", err)
	}
	if !pub.(*rsa.PublicKey).Equal(rk.signer.Public()) {
		t.Error("p= is not the key's public key")
	}
	if len(value) <= 255 {
		t.Errorf("RSA 2048 value is %d octets; the chunking test needs more than 255", len(value))
	}

	ek, err := Generate("example.com", "s2", AlgorithmEd25519)
	if err != nil {
		t.Fatal(err)
	}
	_, value = ek.TXTRecord()
	p, ok = strings.CutPrefix(value, "v=DKIM1; k=ed25519; p=")
	if !ok {
		t.Fatalf("Ed25519 value = %q", value)
	}
	raw, err := base64.StdEncoding.DecodeString(p)
	if err != nil || len(raw) != 32 {
		t.Fatalf("p= is not a raw 32-byte key (RFC 8463): %d bytes, %v", len(raw), err)
	}
}

func TestTXTChunks(t *testing.T) {
	for _, n := range []int{0, 1, 254, 255, 256, 510, 511, 1000} {
		v := strings.Repeat("x", n)
		chunks := TXTChunks(v)
		if strings.Join(chunks, "") != v {
			t.Errorf("len %d: chunks do not join back", n)
		}
		for _, c := range chunks {
			if len(c) > 255 {
				t.Errorf("len %d: chunk of %d octets", n, len(c))
			}
		}
		if want := max(1, (n+254)/255); len(chunks) != want {
			t.Errorf("len %d: %d chunks, want %d", n, len(chunks), want)
		}
	}
}

// TestZoneLine parses ZoneLine's output with a real zone-file parser and
// checks the record it describes is TXTRecord.
func TestZoneLine(t *testing.T) {
	for _, alg := range []string{AlgorithmRSA, AlgorithmEd25519} {
		k, err := Generate("example.com", "sel", alg)
		if err != nil {
			t.Fatal(err)
		}
		line := k.ZoneLine()
		if !strings.HasPrefix(line, "sel._domainkey.example.com. IN TXT ( \"v=DKIM1; k="+alg+"; p=") {
			t.Errorf("%s: ZoneLine = %q", alg, line)
		}
		zp := dns.NewZoneParser(strings.NewReader(line+"\n"), "", "")
		zp.SetDefaultTTL(3600)
		rr, ok := zp.Next()
		if err := zp.Err(); err != nil || !ok {
			t.Fatalf("%s: zone parser: %v (line %q)", alg, err, line)
		}
		txt, isTXT := rr.(*dns.TXT)
		if !isTXT {
			t.Fatalf("%s: parsed %T", alg, rr)
		}
		name, value := k.TXTRecord()
		if txt.Hdr.Name != name+"." {
			t.Errorf("%s: owner %q", alg, txt.Hdr.Name)
		}
		if got := strings.Join(txt.Txt, ""); got != value {
			t.Errorf("%s: TXT strings join to %q, want %q", alg, got, value)
		}
		for _, s := range txt.Txt {
			if len(s) > 255 {
				t.Errorf("%s: character-string of %d octets", alg, len(s))
			}
		}
	}
}

func TestGenerateBadInput(t *testing.T) {
	for _, tc := range []struct{ domain, selector string }{
		{"", "sel"},
		{"example.com", ""},
		{"exa mple.com", "sel"},
		{"example..com", "sel"},
		{"-example.com", "sel"},
		{"example-.com", "sel"},
		{"exam_ple.com", "sel"},
		{"exämple.com", "sel"},
		{"example.com\r\nX: y", "sel"},
		{"example.com", "sel;x=1"},
		{"example.com", "se l"},
		{"example.com", "_sel"},
		{"example.com", strings.Repeat("a", 64)},
		{strings.Repeat("a.", 120) + "com", "sel"},
	} {
		if _, err := Generate(tc.domain, tc.selector, AlgorithmEd25519); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Generate(%q, %q): err = %v, want ErrInvalidName", tc.domain, tc.selector, err)
		}
		if _, err := Parse(tc.domain, tc.selector, nil); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Parse(%q, %q): err = %v, want ErrInvalidName", tc.domain, tc.selector, err)
		}
	}
	for _, alg := range []string{"", "RSA", "rsa-sha256", "ecdsa", "dsa"} {
		if _, err := Generate("example.com", "sel", alg); err == nil {
			t.Errorf("Generate with algorithm %q succeeded", alg)
		}
	}
	// Multi-label selectors are valid (RFC 6376 §3.1).
	if _, err := Generate("mail.example.com", "2024.eu", AlgorithmEd25519); err != nil {
		t.Errorf("multi-label selector: %v", err)
	}
}

// rsa512PEM is a 512-bit RSA key (generated for this test only): too small
// for DKIM (RFC 8301 §3.2).
const rsa512PEM = `-----BEGIN PRIVATE KEY-----
MIIBUwIBADANBgkqhkiG9w0BAQEFAASCAT0wggE5AgEAAkEAs5OzMd2TzopO0Zdv
QjBDPV2HoNwEqeE2Eye/AfZ/e97LhLQLSERyol9j8YjPVqrQuDlJhBI/aYCSw540
Q1pk+QIDAQABAkABmfcmsHgOv+pWsX1AgzBWUYluUrKkZL8YCfh6iqtSJwOMHS1x
wRS+N0acJHUJFwyMYqJXE6fMcCT9CTNMWiAxAiEAzkUoz089KPvNeZ583V6GSRfz
TN6CshOtCqDhQLfz1yMCIQDe3w5ZDuTnc8BGqU7Jk9jcjup2iy8YfPs0fdyJi1xj
MwIgB7x8TVoxdwoKqNcS49KZwsANNgLacAdg5Bcom57KnHUCIFJ4YbvMyiFncL/1
CKWI4xeCfvpMuKmsHdynskLnYdGHAiB4ZigDZiUzRQENWkBHs5/R02lvoG0VQAea
XOsvtOERgQ==
-----END PRIVATE KEY-----
`

func TestParse(t *testing.T) {
	// PKCS#1 RSA keys are accepted and sign verifiably.
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	k, err := Parse("example.com", "old", pkcs1)
	if err != nil {
		t.Fatalf("Parse(PKCS#1): %v", err)
	}
	if k.Algorithm != AlgorithmRSA {
		t.Fatalf("Algorithm = %q", k.Algorithm)
	}
	if v := verify(t, k, sign(t, k, testMessage)+testMessage); v.Err != nil {
		t.Fatalf("PKCS#1 key: %v", v.Err)
	}
	// PrivatePEM re-encodes it as PKCS#8.
	p8, err := k.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(p8); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("PrivatePEM of a PKCS#1 key: %q", p8)
	}

	ed, err := Generate("example.com", "sel", AlgorithmEd25519)
	if err != nil {
		t.Fatal(err)
	}
	edPEM, err := ed.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}

	ecPKCS8 := mustECDSAPKCS8(t)

	for name, in := range map[string][]byte{
		"empty":          nil,
		"garbage":        []byte("not a key at all"),
		"truncated":      edPEM[:len(edPEM)/2],
		"bad base64":     []byte("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n"),
		"bad DER":        pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("garbage")}),
		"wrong type":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}),
		"public key":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("x")}),
		"two keys":       append(append([]byte{}, edPEM...), edPEM...),
		"encrypted":      pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte("x")}),
		"PKCS#1 as PK8":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}),
		"ECDSA":          ecPKCS8,
		"RSA 512 bits":   []byte(rsa512PEM),
		"RSA 512 PKCS#1": rsa512PKCS1(t),
	} {
		if _, err := Parse("example.com", "sel", in); err == nil {
			t.Errorf("%s: Parse succeeded", name)
		} else if strings.HasPrefix(name, "RSA 512") && !strings.Contains(err.Error(), "512 bits") {
			t.Errorf("%s: error does not say the key is too small: %v", name, err)
		}
	}
}

func TestSignBadMessage(t *testing.T) {
	k, err := Generate("example.com", "sel", AlgorithmEd25519)
	if err != nil {
		t.Fatal(err)
	}
	for name, msg := range map[string]string{
		"no From":      "To: bob@example.net\r\n\r\nbody\r\n",
		"two From":     "From: a@example.com\r\nFrom: b@example.com\r\n\r\nbody\r\n",
		"no separator": "From: a@example.com\r\nSubject: x\r\n",
		"empty":        "",
	} {
		if _, err := k.Sign(strings.NewReader(msg)); err == nil {
			t.Errorf("%s: Sign succeeded", name)
		}
	}
	if _, err := k.Sign(strings.NewReader("From: a@example.com\r\nSubject: x\r\n\r\n")); err != nil {
		t.Errorf("empty body: %v", err)
	}
}

func TestHeaderKeys(t *testing.T) {
	got, err := headerKeys([]string{"Received", "from", "To", "TO", "Subject", "List-Id", "List-ID", "List-Unsubscribe-Post", "List-X;y", "X-Mailer"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"from", "from", "to", "to", "to", "subject", "subject", "list-id", "list-id", "list-unsubscribe-post"}
	if !slices.Equal(got, want) {
		t.Errorf("headerKeys = %v, want %v", got, want)
	}
}

func mustECDSAPKCS8(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// rsa512PKCS1 is rsa512PEM re-encoded as PKCS#1.
func rsa512PKCS1(t *testing.T) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(rsa512PEM))
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatalf("parsing the 512-bit test key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.(*rsa.PrivateKey))})
}

func TestSignTooManyFields(t *testing.T) {
	k, err := Generate("example.com", "sel", AlgorithmEd25519)
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: a@example.com\r\n" + strings.Repeat("To: b@example.com\r\n", 400) + "\r\nbody\r\n"
	if _, err := k.Sign(strings.NewReader(msg)); err == nil {
		t.Error("Sign of a message with 400 To fields succeeded; its h= line is over 998 octets")
	}
}
