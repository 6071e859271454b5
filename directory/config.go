package directory

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Presets name a set of defaults for attribute names and filters.
const (
	PresetOpenLDAP = "openldap" // inetOrgPerson + inetLocalMailRecipient + mailcluster.schema
	PresetAD       = "ad"       // Active Directory: user/group, proxyAddresses, objectGUID
)

// Enabled modes: how the enabled attribute is read.
const (
	EnabledBoolean = "boolean" // "FALSE" (case-insensitive) disables; absent or anything else enables
	EnabledADUAC   = "ad-uac"  // Active Directory userAccountControl: bit 0x2 (ACCOUNTDISABLE) disables
)

// Config configures a Directory. The zero value is not usable: start from
// DefaultConfig. Fields left empty that have a preset value (filters,
// attribute names) take it from Preset; Validate fills them in.
//
// Filters contain the placeholder %s, replaced by the RFC 4515-escaped
// address or login: no filter is ever built from unescaped input.
type Config struct {
	URLs         []string `name:"ldap-urls" help:"LDAP server URLs, tried in order (ldap:// or ldaps://); the next is used when one is down"`
	BindDN       string   `name:"ldap-bind-dn" help:"DN to bind as for lookups (empty: anonymous)"`
	BindPassword string   `name:"ldap-bind-password" help:"password for ldap-bind-dn"`
	BindPassFile string   `name:"ldap-bind-password-file" help:"file holding the password for ldap-bind-dn (instead of ldap-bind-password)"`
	BaseDN       string   `name:"ldap-base-dn" help:"base DN below which accounts, aliases and lists are searched"`
	Preset       string   `name:"ldap-preset" help:"defaults for filters and attributes: openldap or ad"`

	AddressFilter string `name:"ldap-address-filter" help:"filter finding the entry (account or list) that owns an address; %s is the address (empty: from preset)"`
	LoginFilter   string `name:"ldap-login-filter" help:"filter finding the account for a login; %s is the login (empty: from preset)"`

	AttrID            string `name:"ldap-attr-id" help:"attribute with the stable account id, e.g. entryUUID or objectGUID (empty: from preset)"`
	AttrMail          string `name:"ldap-attr-mail" help:"attribute with the primary address (empty: from preset)"`
	AttrAlias         string `name:"ldap-attr-alias" help:"attribute with further addresses (aliases); values may carry an smtp: prefix (empty: from preset)"`
	AttrLogin         string `name:"ldap-attr-login" help:"attribute with the login name, e.g. uid or sAMAccountName (empty: from preset)"`
	AttrBackend       string `name:"ldap-attr-backend" help:"attribute naming the account's backend (empty: from preset)"`
	AttrForward       string `name:"ldap-attr-forward" help:"attribute with a forwarding address (empty: from preset; - disables)"`
	AttrQuotaBytes    string `name:"ldap-attr-quota-bytes" help:"attribute with the storage quota in bytes (empty: from preset; - disables)"`
	AttrQuotaMessages string `name:"ldap-attr-quota-messages" help:"attribute with the message count quota (empty: from preset; - disables)"`
	AttrEnabled       string `name:"ldap-attr-enabled" help:"attribute telling whether the account is enabled (empty: from preset; - disables)"`
	EnabledMode       string `name:"ldap-enabled-mode" help:"how ldap-attr-enabled is read: boolean or ad-uac (empty: from preset)"`
	AttrMember        string `name:"ldap-attr-member" help:"attribute with a list's member DNs (empty: from preset)"`
	ListObjectClass   string `name:"ldap-list-object-class" help:"object class that makes an entry a distribution list (empty: from preset)"`
	AttrName          string `name:"ldap-attr-name" help:"attribute with a display name (empty: from preset)"`

	StartTLS      bool   `name:"ldap-starttls" help:"upgrade ldap:// connections with StartTLS (required to succeed)"`
	CAFile        string `name:"ldap-ca-file" help:"PEM file of CA certificates to verify the LDAP server (empty: system roots)"`
	TLSServerName string `name:"ldap-tls-server-name" help:"name to verify the LDAP server certificate against (empty: the URL's host)"`

	DialTimeout time.Duration `name:"ldap-dial-timeout" help:"timeout for connecting (TCP and TLS) to one LDAP server"`
	Timeout     time.Duration `name:"ldap-timeout" help:"timeout for one LDAP operation (search, bind, modify)"`
	PoolSize    int           `name:"ldap-pool-size" help:"maximum connections for lookups, and separately for authentication binds"`
	ConnMaxAge  time.Duration `name:"ldap-conn-max-age" help:"idle connections older than this are closed (lets traffic return to the first URL after failover)"`
	DownFor     time.Duration `name:"ldap-down-for" help:"a server that failed is skipped for this long while others are available"`

	CacheTTL         time.Duration `name:"ldap-cache-ttl" help:"how long a found address is served from cache without asking LDAP"`
	NegativeCacheTTL time.Duration `name:"ldap-negative-cache-ttl" help:"how long an unknown address is remembered as unknown"`
	StaleTTL         time.Duration `name:"ldap-stale-ttl" help:"during an LDAP outage, found addresses are still served if fetched within this long (0: never)"`
	CacheSize        int           `name:"ldap-cache-size" help:"maximum cached addresses"`

	LocalDomains        []string `name:"local-domains" help:"domains whose addresses are looked up in LDAP (empty: every domain)"`
	FoldLocalPart       bool     `name:"fold-local-part" help:"treat local parts case-insensitively (User@ = user@)"`
	SubaddressSeparator string   `name:"subaddress-separator" help:"characters that start a subaddress (user+tag@): each one is a separator; empty disables"`

	ListMaxDepth   int `name:"list-max-depth" help:"maximum nesting of distribution lists"`
	ListMaxMembers int `name:"list-max-members" help:"maximum recipients a list expands to"`

	AuthDelayBase time.Duration `name:"auth-delay-base" help:"delay after the first failed login (per login and client IP, and per client IP); doubles with each further failure"`
	AuthDelayMax  time.Duration `name:"auth-delay-max" help:"maximum delay before answering a login attempt"`
	AuthFailFree  int           `name:"auth-fail-free" help:"failed logins from one client IP before its attempts are delayed at all (per login and IP failures delay from the first)"`
	AuthFailTTL   time.Duration `name:"auth-fail-ttl" help:"failures older than this are forgotten"`
	AuthCacheTTL  time.Duration `name:"auth-cache-ttl" help:"how long a login and password that LDAP accepted are accepted again without asking LDAP (kept as a keyed hash; a failed login for that login drops it; at most 10m, 0: off)"`
}

// DefaultConfig returns the defaults: OpenLDAP preset, local slapd.
func DefaultConfig() Config {
	return Config{
		URLs:                []string{"ldap://127.0.0.1:389/"},
		Preset:              PresetOpenLDAP,
		DialTimeout:         3 * time.Second,
		Timeout:             5 * time.Second,
		PoolSize:            8,
		ConnMaxAge:          5 * time.Minute,
		DownFor:             10 * time.Second,
		CacheTTL:            60 * time.Second,
		NegativeCacheTTL:    30 * time.Second,
		StaleTTL:            time.Hour,
		CacheSize:           100000,
		FoldLocalPart:       true,
		SubaddressSeparator: "+",
		ListMaxDepth:        8,
		ListMaxMembers:      10000,
		AuthDelayBase:       500 * time.Millisecond,
		AuthDelayMax:        15 * time.Second,
		AuthFailFree:        5,
		AuthFailTTL:         15 * time.Minute,
		AuthCacheTTL:        time.Minute,
	}
}

type preset struct {
	addressFilter, loginFilter                                     string
	id, mail, alias, login, backend, forward, qBytes, qMsgs, enabl string
	enabledMode, member, listClass, name                           string
}

var presets = map[string]preset{
	PresetOpenLDAP: {
		addressFilter: "(&(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))(|(mail=%s)(mailLocalAddress=%s)))",
		loginFilter:   "(&(objectClass=inetOrgPerson)(|(uid=%s)(mail=%s)(mailLocalAddress=%s)))",
		id:            "entryUUID", mail: "mail", alias: "mailLocalAddress", login: "uid", backend: "mailHost",
		forward: "mailRoutingAddress", qBytes: "mailclusterQuotaBytes", qMsgs: "mailclusterQuotaMessages",
		enabl: "mailclusterEnabled", enabledMode: EnabledBoolean, member: "member", listClass: "groupOfNames", name: "cn",
	},
	PresetAD: {
		addressFilter: "(&(|(&(objectClass=user)(objectCategory=person))(objectClass=group))(|(mail=%s)(proxyAddresses=smtp:%s)))",
		loginFilter:   "(&(objectClass=user)(objectCategory=person)(|(sAMAccountName=%s)(userPrincipalName=%s)(mail=%s)))",
		id:            "objectGUID", mail: "mail", alias: "proxyAddresses", login: "sAMAccountName", backend: "extensionAttribute1",
		forward: "-", qBytes: "extensionAttribute2", qMsgs: "extensionAttribute3",
		enabl: "userAccountControl", enabledMode: EnabledADUAC, member: "member", listClass: "group", name: "displayName",
	},
}

// Validate checks the configuration and fills in preset values for empty
// filters and attribute names. Errors name the setting.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	p, ok := presets[c.Preset]
	if !ok {
		bad("ldap-preset: %q is not openldap or ad", c.Preset)
		p = presets[PresetOpenLDAP]
	}
	fill := func(f *string, v string) {
		if *f == "" {
			*f = v
		}
	}
	fill(&c.AddressFilter, p.addressFilter)
	fill(&c.LoginFilter, p.loginFilter)
	fill(&c.AttrID, p.id)
	fill(&c.AttrMail, p.mail)
	fill(&c.AttrAlias, p.alias)
	fill(&c.AttrLogin, p.login)
	fill(&c.AttrBackend, p.backend)
	fill(&c.AttrForward, p.forward)
	fill(&c.AttrQuotaBytes, p.qBytes)
	fill(&c.AttrQuotaMessages, p.qMsgs)
	fill(&c.AttrEnabled, p.enabl)
	fill(&c.EnabledMode, p.enabledMode)
	fill(&c.AttrMember, p.member)
	fill(&c.ListObjectClass, p.listClass)
	fill(&c.AttrName, p.name)

	if len(c.URLs) == 0 {
		bad("ldap-urls: at least one URL is needed")
	}
	for _, u := range c.URLs {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "ldap" && pu.Scheme != "ldaps") || pu.Host == "" {
			bad("ldap-urls: %q is not an ldap:// or ldaps:// URL with a host", u)
		}
	}
	if c.BindPassFile != "" {
		if c.BindPassword != "" {
			bad("ldap-bind-password-file: set either it or ldap-bind-password, not both")
		} else if b, err := os.ReadFile(c.BindPassFile); err != nil {
			bad("ldap-bind-password-file: %v", err)
		} else {
			c.BindPassword = strings.TrimRight(string(b), "\r\n")
			c.BindPassFile = ""
		}
	}
	if c.BindDN != "" && c.BindPassword == "" {
		bad("ldap-bind-password: needed with ldap-bind-dn")
	}
	if c.BaseDN == "" {
		bad("ldap-base-dn: must be set")
	}
	if !strings.Contains(c.AddressFilter, "%s") || !balanced(c.AddressFilter) {
		bad("ldap-address-filter: %q needs balanced parentheses and a %%s", c.AddressFilter)
	}
	if !strings.Contains(c.LoginFilter, "%s") || !balanced(c.LoginFilter) {
		bad("ldap-login-filter: %q needs balanced parentheses and a %%s", c.LoginFilter)
	}
	if c.EnabledMode != EnabledBoolean && c.EnabledMode != EnabledADUAC {
		bad("ldap-enabled-mode: %q is not boolean or ad-uac", c.EnabledMode)
	}
	if c.StartTLS {
		for _, u := range c.URLs {
			if strings.HasPrefix(u, "ldaps:") {
				bad("ldap-starttls: cannot be used with the ldaps:// URL %s", u)
			}
		}
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			bad("ldap-ca-file: %v", err)
		}
	}
	positive := map[string]time.Duration{"ldap-dial-timeout": c.DialTimeout, "ldap-timeout": c.Timeout,
		"ldap-conn-max-age": c.ConnMaxAge, "ldap-cache-ttl": c.CacheTTL, "auth-fail-ttl": c.AuthFailTTL}
	for name, d := range positive {
		if d <= 0 {
			bad("%s: must be positive, got %s", name, d)
		}
	}
	for name, d := range map[string]time.Duration{"ldap-negative-cache-ttl": c.NegativeCacheTTL, "ldap-stale-ttl": c.StaleTTL,
		"ldap-down-for": c.DownFor, "auth-delay-base": c.AuthDelayBase, "auth-delay-max": c.AuthDelayMax} {
		if d < 0 {
			bad("%s: must not be negative, got %s", name, d)
		}
	}
	if c.AuthCacheTTL < 0 || c.AuthCacheTTL > 10*time.Minute {
		bad("auth-cache-ttl: must be between 0 and 10m, got %s", c.AuthCacheTTL)
	}
	if c.AuthDelayMax < c.AuthDelayBase {
		bad("auth-delay-max: %s is below auth-delay-base %s", c.AuthDelayMax, c.AuthDelayBase)
	}
	if c.PoolSize < 1 {
		bad("ldap-pool-size: must be at least 1, got %d", c.PoolSize)
	}
	if c.CacheSize < 1 {
		bad("ldap-cache-size: must be at least 1, got %d", c.CacheSize)
	}
	if c.ListMaxDepth < 1 || c.ListMaxMembers < 1 {
		bad("list-max-depth, list-max-members: must be at least 1")
	}
	if c.AuthFailFree < 0 {
		bad("auth-fail-free: must not be negative")
	}
	if strings.ContainsAny(c.SubaddressSeparator, "@\"\\ ") {
		bad("subaddress-separator: %q may not contain @, quotes, backslash or space", c.SubaddressSeparator)
	}
	domains := make([]string, 0, len(c.LocalDomains)) // not in place: the caller's slice stays as it was
	for _, d := range c.LocalDomains {
		n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if n == "" || strings.ContainsAny(n, "@ ") {
			bad("local-domains: %q is not a domain", d)
		}
		domains = append(domains, n)
	}
	c.LocalDomains = domains
	return errors.Join(errs...)
}

// balanced reports whether a filter's parentheses nest properly.
func balanced(f string) bool {
	depth := 0
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '\\':
			i++
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0 && strings.HasPrefix(f, "(")
}

// attr reports whether an attribute setting is in use ("-" disables it).
func attr(name string) bool { return name != "" && name != "-" }
