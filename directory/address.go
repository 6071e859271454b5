package directory

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxAddressLen bounds addresses and logins (RFC 5321 section 4.5.3.1.3:
// a path is at most 256 octets).
const maxAddressLen = 256

// Address is an address split and normalised by the directory's rules.
type Address struct {
	Local  string // local part, folded when fold-local-part is on, subaddress kept
	Domain string // lower case, no trailing dot
	Detail string // the subaddress after the separator ("" when none); set by Base
}

func (a Address) String() string { return a.Local + "@" + a.Domain }

// Normalize splits an address at its last @, lowercases the domain and, when
// FoldLocalPart is on, the local part. It rejects what cannot be an address:
// no @, an empty part, NUL or other control characters, invalid UTF-8, more
// than 256 bytes. Quoted local parts are taken literally.
func (d *Directory) Normalize(address string) (Address, error) {
	return normalize(&d.cfg, address)
}

func normalize(cfg *Config, address string) (Address, error) {
	if len(address) > maxAddressLen {
		return Address{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidAddress, maxAddressLen)
	}
	if !utf8.ValidString(address) {
		return Address{}, fmt.Errorf("%w: not UTF-8", ErrInvalidAddress)
	}
	for _, r := range address {
		if r < 0x20 || r == 0x7f || r == ' ' {
			return Address{}, fmt.Errorf("%w: control character or space", ErrInvalidAddress)
		}
	}
	at := strings.LastIndexByte(address, '@')
	if at <= 0 || at == len(address)-1 {
		return Address{}, fmt.Errorf("%w: %q is not local@domain", ErrInvalidAddress, address)
	}
	a := Address{Local: address[:at], Domain: strings.ToLower(strings.TrimSuffix(address[at+1:], "."))}
	if a.Domain == "" || strings.ContainsAny(a.Domain, "@()<>,;:\\\"") {
		return Address{}, fmt.Errorf("%w: bad domain %q", ErrInvalidAddress, a.Domain)
	}
	if cfg.FoldLocalPart {
		a.Local = strings.ToLower(a.Local)
	}
	return a, nil
}

// base returns the address without its subaddress (user+tag → user, Detail
// tag) and whether there was one. A separator at the start of the local part
// does not count.
func base(cfg *Config, a Address) (Address, bool) {
	if cfg.SubaddressSeparator == "" {
		return a, false
	}
	i := strings.IndexAny(a.Local, cfg.SubaddressSeparator)
	if i <= 0 {
		return a, false
	}
	return Address{Local: a.Local[:i], Domain: a.Domain, Detail: a.Local[i+1:]}, true
}

// IsLocalDomain reports whether mail to domain is looked up in the
// directory: true for every domain when local-domains is empty.
func (d *Directory) IsLocalDomain(domain string) bool {
	return isLocal(&d.cfg, domain)
}

func isLocal(cfg *Config, domain string) bool {
	if len(cfg.LocalDomains) == 0 {
		return true
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, l := range cfg.LocalDomains {
		if l == domain {
			return true
		}
	}
	return false
}

// sameAddress reports whether an address value read from LDAP is the
// normalised address a: domains compare case-insensitively, local parts as
// fold-local-part says. An "smtp:" prefix (Active Directory proxyAddresses)
// is ignored.
func sameAddress(cfg *Config, value string, a Address) bool {
	v, err := normalize(cfg, stripSMTP(value))
	return err == nil && v.Domain == a.Domain && v.Local == a.Local
}

// stripSMTP removes an "smtp:" prefix, in any case.
func stripSMTP(v string) string {
	if len(v) > 5 && strings.EqualFold(v[:5], "smtp:") {
		return v[5:]
	}
	return v
}
