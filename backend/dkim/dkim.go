// Package dkim holds a domain's DKIM signing key and signs outbound messages
// with it (RFC 6376, RSA per RFC 8301, Ed25519 per RFC 8463).
//
// Signing itself is github.com/emersion/go-msgauth/dkim's; this package owns
// key handling (generation, PEM, the DNS record to publish) and the choice
// of header fields to sign.
package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Algorithms accepted by Generate and reported in Key.Algorithm.
const (
	// AlgorithmRSA signs with rsa-sha256 (RFC 6376 §3.3.1). Generate makes
	// 2048-bit keys, as RFC 8301 §3.2 recommends.
	AlgorithmRSA = "rsa"
	// AlgorithmEd25519 signs with ed25519-sha256 (RFC 8463 §3).
	AlgorithmEd25519 = "ed25519"
)

const (
	// rsaGenerateBits is the size of keys made by Generate.
	rsaGenerateBits = 2048
	// rsaMinBits: RFC 8301 §3.2, verifiers MUST NOT accept signatures made
	// with smaller keys, so signing with one is pointless.
	rsaMinBits = 1024
	// rsaMaxBits: RFC 8301 §3.2 only requires verifiers to handle keys up to
	// 4096 bits; a larger key risks signatures nobody checks.
	rsaMaxBits = 4096
)

// ErrInvalidName is returned (wrapped) when a domain or selector is not a
// valid DNS name.
var ErrInvalidName = errors.New("dkim: invalid name")

// Key is one domain's signing key.
//
// Keys come from Generate or Parse (a Key literal has no private key and
// cannot be used); they are immutable and safe for concurrent use.
type Key struct {
	// Domain is the signing domain (d=), lower case, without a trailing
	// dot, in A-label (ASCII) form.
	Domain string
	// Selector is the selector (s=), lower case, without a trailing dot.
	Selector string
	// Algorithm is AlgorithmRSA or AlgorithmEd25519, derived from the key.
	Algorithm string

	signer crypto.Signer
}

// Generate creates a new key for domain and selector. algorithm is
// AlgorithmRSA (a 2048-bit key) or AlgorithmEd25519.
//
// domain and selector must be DNS names made of LDH labels (RFC 6376 §3.1
// selector syntax; internationalized domains in A-label form); they are
// lower-cased and a trailing dot is removed.
func Generate(domain, selector, algorithm string) (*Key, error) {
	domain, selector, err := checkNames(domain, selector)
	if err != nil {
		return nil, err
	}
	var signer crypto.Signer
	switch algorithm {
	case AlgorithmRSA:
		k, err := rsa.GenerateKey(rand.Reader, rsaGenerateBits)
		if err != nil {
			return nil, fmt.Errorf("dkim: generating RSA key: %w", err)
		}
		signer = k
	case AlgorithmEd25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("dkim: generating Ed25519 key: %w", err)
		}
		signer = k
	default:
		return nil, fmt.Errorf("dkim: unknown algorithm %q (want %q or %q)", algorithm, AlgorithmRSA, AlgorithmEd25519)
	}
	return &Key{Domain: domain, Selector: selector, Algorithm: algorithm, signer: signer}, nil
}

// Parse loads a private key from PEM: PKCS#8 ("PRIVATE KEY", as written by
// PrivatePEM and `openssl genpkey`) or PKCS#1 ("RSA PRIVATE KEY"). The PEM
// must hold exactly one unencrypted block. Algorithm is derived from the
// key; RSA keys must have 1024 to 4096 bits (RFC 8301 §3.2), other key
// types (ECDSA, ...) are rejected since DKIM defines no algorithm for them.
// domain and selector are checked and normalised as in Generate.
func Parse(domain, selector string, privatePEM []byte) (*Key, error) {
	domain, selector, err := checkNames(domain, selector)
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(privatePEM)
	if block == nil {
		return nil, errors.New("dkim: no PEM block found")
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, errors.New("dkim: unexpected data after the PEM block")
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("dkim: PEM block has headers (encrypted keys are not supported)")
	}

	var parsed any
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("dkim: PEM block type %q, want \"PRIVATE KEY\" or \"RSA PRIVATE KEY\"", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: parsing %s: %w", block.Type, err)
	}

	k := &Key{Domain: domain, Selector: selector}
	switch p := parsed.(type) {
	case *rsa.PrivateKey:
		if bits := p.N.BitLen(); bits < rsaMinBits || bits > rsaMaxBits {
			return nil, fmt.Errorf("dkim: RSA key has %d bits, want %d to %d (RFC 8301)", bits, rsaMinBits, rsaMaxBits)
		}
		k.Algorithm, k.signer = AlgorithmRSA, p
	case ed25519.PrivateKey:
		k.Algorithm, k.signer = AlgorithmEd25519, p
	default:
		return nil, fmt.Errorf("dkim: unsupported key type %T (want RSA or Ed25519)", parsed)
	}
	return k, nil
}

// PrivatePEM returns the private key as a PKCS#8 PEM block ("PRIVATE KEY"),
// which Parse reads back.
func (k *Key) PrivatePEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.signer)
	if err != nil {
		return nil, fmt.Errorf("dkim: encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// TXTRecord returns the DNS TXT record that publishes the public key (RFC
// 6376 §3.6.1): name is "<selector>._domainkey.<domain>" (no trailing dot);
// value is "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>" or, for Ed25519,
// "v=DKIM1; k=ed25519; p=<base64 of the raw 32-byte key>" (RFC 8463 §4).
//
// An RSA value is longer than the 255 octets a single DNS character-string
// can hold: publish it split with TXTChunks, or use ZoneLine.
func (k *Key) TXTRecord() (name, value string) {
	name = k.Selector + "._domainkey." + k.Domain
	var p []byte
	switch pub := k.signer.Public().(type) {
	case *rsa.PublicKey:
		// Cannot fail for a valid RSA key.
		p, _ = x509.MarshalPKIXPublicKey(pub)
	case ed25519.PublicKey:
		p = pub
	}
	return name, "v=DKIM1; k=" + k.Algorithm + "; p=" + base64.StdEncoding.EncodeToString(p)
}

// TXTChunks splits a TXT record value into character-strings of at most 255
// octets (RFC 1035 §3.3.14). DKIM verifiers concatenate the strings of a
// record without separators (RFC 6376 §3.6.2.2), so the split points do not
// matter.
func TXTChunks(value string) []string {
	const max = 255
	var chunks []string
	for len(value) > max {
		chunks = append(chunks, value[:max])
		value = value[max:]
	}
	return append(chunks, value)
}

// ZoneLine returns the key's TXT record as one zone-file line (RFC 1035
// §5.1), absolute owner name, value split into quoted 255-octet strings:
//
//	sel._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; p=MIIB..." "..." )
func (k *Key) ZoneLine() string {
	name, value := k.TXTRecord()
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(". IN TXT (")
	for _, c := range TXTChunks(value) {
		b.WriteString(` "`)
		// Our values never hold these, but a zone file must escape them.
		c = strings.ReplaceAll(c, `\`, `\\`)
		c = strings.ReplaceAll(c, `"`, `\"`)
		b.WriteString(c)
		b.WriteString(`"`)
	}
	b.WriteString(" )")
	return b.String()
}

// checkNames validates and normalises a domain and a selector, and checks
// that the record name built from them fits in a DNS name.
func checkNames(domain, selector string) (string, string, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	selector = strings.ToLower(strings.TrimSuffix(selector, "."))
	if err := checkDNSName(domain); err != nil {
		return "", "", fmt.Errorf("%w: domain %q: %v", ErrInvalidName, domain, err)
	}
	if err := checkDNSName(selector); err != nil {
		return "", "", fmt.Errorf("%w: selector %q: %v", ErrInvalidName, selector, err)
	}
	if n := len(selector) + len("._domainkey.") + len(domain); n > 253 {
		return "", "", fmt.Errorf("%w: record name is %d octets, the maximum is 253", ErrInvalidName, n)
	}
	return domain, selector, nil
}

// checkDNSName checks that s is dot-separated LDH labels (RFC 1035 §2.3.1,
// RFC 5890 for A-labels): each 1 to 63 octets of letters, digits and
// hyphens, neither starting nor ending with a hyphen. This is the selector
// ABNF of RFC 6376 §3.1 and the host names d= may name.
func checkDNSName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > 253 {
		return errors.New("longer than 253 octets")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return errors.New("label longer than 63 octets")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("label %q has character %q (use A-labels for internationalized names)", label, c)
			}
		}
	}
	return nil
}
