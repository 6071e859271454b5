// Package directory answers who an address or login is, over LDAP: the
// account (stable id, primary address, backend, quota, enabled), what a
// distribution list expands to, where a forward goes, and whether a password
// is right (search, then bind as the entry found).
//
// It is the only package that speaks LDAP (the only importer of go-ldap).
// Frontends use Directory (read-only, cached); the admin command uses
// Manager (writes).
//
// Availability contract: an LDAP outage never turns into "unknown". Answers
// are cached (positive for ldap-cache-ttl, negative for
// ldap-negative-cache-ttl); while no LDAP server answers, addresses found
// within ldap-stale-ttl are served from cache and everything else fails with
// an error wrapping ErrTemporary, which callers must map to a temporary
// protocol error (SMTP 4xx, IMAP NO [UNAVAILABLE]).
package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// Errors. Test with errors.Is.
var (
	// ErrTemporary: no LDAP server answered (or one answered "busy",
	// "unavailable", a timeout); try again later. Never means "unknown".
	ErrTemporary = errors.New("directory temporarily unavailable")
	// ErrBadCredentials: no such login, or the password is wrong. The two
	// are deliberately not distinguished.
	ErrBadCredentials = errors.New("invalid credentials")
	// ErrDisabled: the password is right but the account is disabled.
	ErrDisabled = errors.New("account disabled")
	// ErrInvalidAddress: the input cannot be an address.
	ErrInvalidAddress = errors.New("invalid address")
	// ErrListLimit: a distribution list nests deeper than list-max-depth or
	// expands to more than list-max-members recipients.
	ErrListLimit = errors.New("distribution list limit exceeded")
)

// Kind says what an address is.
type Kind int

// Kinds of Result.
const (
	Unknown  Kind = iota // no entry has this address (in a local domain)
	Account              // a mailbox: Result.Account
	List                 // a distribution list: Result.Members and Result.Forwards
	Forward              // mail goes elsewhere: Result.Forwards (Result.Account describes the entry)
	NotLocal             // the domain is not one of local-domains; LDAP was not asked
)

func (k Kind) String() string {
	switch k {
	case Account:
		return "account"
	case List:
		return "list"
	case Forward:
		return "forward"
	case NotLocal:
		return "not-local"
	default:
		return "unknown"
	}
}

// MarshalText makes kinds readable in JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (k *Kind) UnmarshalText(b []byte) error {
	for c := Unknown; c <= NotLocal; c++ {
		if c.String() == string(b) {
			*k = c
			return nil
		}
	}
	return fmt.Errorf("directory: unknown kind %q", b)
}

// Quota is an account's quota; 0 means "the backend's default".
type Quota struct {
	StorageBytes int64 `json:"storage_bytes"`
	Messages     int64 `json:"messages"`
}

// AccountInfo describes an account entry.
type AccountInfo struct {
	ID      string   `json:"id"`      // stable id (entryUUID, or objectGUID as a UUID); never changes on rename
	DN      string   `json:"dn"`      // the entry's DN (changes on rename: do not key data by it)
	Address string   `json:"address"` // primary address, as stored
	Aliases []string `json:"aliases,omitempty"`
	Login   string   `json:"login,omitempty"`
	Name    string   `json:"name,omitempty"`
	Backend string   `json:"backend,omitempty"` // mailHost: affinity, "" lets the frontend choose
	Forward []string `json:"forward,omitempty"` // forwarding addresses (mailRoutingAddress)
	Quota   Quota    `json:"quota"`
	Enabled bool     `json:"enabled"`
}

// Result is what Resolve found for an address. Slices are shared with the
// cache: callers must not modify them.
type Result struct {
	Kind    Kind   `json:"kind"`
	Address string `json:"address"`          // the normalised address that matched (subaddress removed)
	Detail  string `json:"detail,omitempty"` // the subaddress ("tag" of user+tag@), if it was removed to match
	DN      string `json:"dn,omitempty"`     // the matched entry
	// Account: the account (Kind Account), or the entry that forwards (Kind Forward).
	Account AccountInfo `json:"account"`
	// Members: the enabled accounts a list expands to, each once, nested
	// lists flattened.
	Members []AccountInfo `json:"members,omitempty"`
	// Forwards: addresses to pass mail on to, as stored (mailRoutingAddress).
	// They may be in a local domain: the caller resolves those again,
	// bounding the depth itself.
	Forwards []string `json:"forwards,omitempty"`
	// Warnings: what list expansion skipped (loops, disabled or missing
	// members), for logs and `admin explain`.
	Warnings []string `json:"warnings,omitempty"`
}

// Option changes how a Directory or Manager works; for tests.
type Option func(*options)

type options struct {
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// WithClock replaces time.Now (cache ages, failure windows).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithSleep replaces the wait before a delayed login attempt. It must return
// ctx.Err() if ctx ends first.
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(o *options) { o.sleep = sleep }
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Directory answers lookups and authentications. It is safe for concurrent
// use.
type Directory struct {
	cfg      Config
	log      *slog.Logger
	opt      options
	lookup   *pool // bound as BindDN
	auth     *pool // bound as the users who log in
	cache    *cache
	creds    *credCache
	flight   flight
	throttle *throttle
	attrs    []string
	metrics  *metrics
}

// New validates cfg and returns a Directory. It does not connect: the first
// lookup does, and Ping checks that a server answers.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Directory, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := options{now: time.Now, sleep: sleepCtx}
	for _, f := range opts {
		f(&o)
	}
	d := &Directory{cfg: cfg, log: log, opt: o, metrics: newMetrics()}
	d.cfg.URLs = append([]string(nil), cfg.URLs...)
	var err error
	if d.lookup, err = newPool(&d.cfg, log, cfg.BindDN, cfg.BindPassword, o.now); err != nil {
		return nil, err
	}
	if d.auth, err = newPool(&d.cfg, log, "", "", o.now); err != nil {
		return nil, err
	}
	d.cache = newCache(cfg.CacheSize)
	d.creds = newCredCache(cfg.CacheSize)
	d.throttle = newThrottle(&d.cfg, o.now)
	d.attrs = entryAttrs(&d.cfg)
	return d, nil
}

// Close closes the idle LDAP connections.
func (d *Directory) Close() error {
	d.lookup.close()
	d.auth.close()
	return nil
}

// Ping checks that an LDAP server answers a search of the base DN with the
// lookup credentials.
func (d *Directory) Ping(ctx context.Context) error {
	return d.lookup.do(ctx, func(c *ldap.Conn) error {
		_, err := c.Search(ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			1, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		return err
	})
}

// Resolve says what mail to address should do. The domain is compared
// case-insensitively; the local part as fold-local-part says. If no entry
// has the address and it has a subaddress (user+tag@), the address without
// it is tried and Result.Detail is the tag. Mail to a disabled account
// resolves to that account with Enabled false: the caller rejects it.
//
// Errors: ErrInvalidAddress; ErrListLimit; ErrTemporary when LDAP is down
// and the address was not seen within ldap-stale-ttl.
func (d *Directory) Resolve(ctx context.Context, address string) (Result, error) {
	a, err := normalize(&d.cfg, address)
	if err != nil {
		return Result{}, err
	}
	if !isLocal(&d.cfg, a.Domain) {
		return Result{Kind: NotLocal, Address: a.String()}, nil
	}
	res, err := d.cached(ctx, a)
	if err != nil || res.Kind != Unknown {
		return res, err
	}
	if b, ok := base(&d.cfg, a); ok {
		bres, err := d.cached(ctx, b)
		if err != nil {
			return Result{}, err
		}
		if bres.Kind != Unknown {
			bres.Detail = b.Detail
			return bres, nil
		}
	}
	return res, nil
}

// cached answers from the cache when fresh, asks LDAP otherwise, and serves
// a stale positive answer when LDAP is unavailable.
func (d *Directory) cached(ctx context.Context, a Address) (Result, error) {
	key := a.String()
	now := d.opt.now()
	e, ok := d.cache.get(key)
	if ok {
		ttl := d.cfg.CacheTTL
		if e.res.Kind == Unknown || e.err != nil {
			ttl = d.cfg.NegativeCacheTTL
		}
		if now.Sub(e.fetched) < ttl {
			d.metrics.lookups.WithLabelValues("cache").Inc()
			return e.res, e.err
		}
	}
	res, err := d.flight.do(key, func() (Result, error) { return d.fetch(ctx, a) })
	switch {
	case err == nil:
		d.metrics.lookups.WithLabelValues("ldap").Inc()
		d.cache.put(key, cacheEntry{res: res, fetched: d.opt.now()})
		return res, nil
	case errors.Is(err, ErrListLimit):
		// Remembered like an unknown address, so that mail to an
		// oversized list does not expand it again for every recipient.
		d.cache.put(key, cacheEntry{err: err, fetched: d.opt.now()})
		return Result{}, err
	case errors.Is(err, ErrTemporary) && ok && e.err == nil && e.res.Kind != Unknown && now.Sub(e.fetched) < d.cfg.StaleTTL:
		d.log.Warn("ldap unavailable: serving cached answer", "address", key, "age", now.Sub(e.fetched).Round(time.Second), "err", err)
		d.metrics.lookups.WithLabelValues("stale").Inc()
		return e.res, nil
	}
	d.metrics.lookups.WithLabelValues("error").Inc()
	return Result{}, err
}

// fetch asks LDAP what a is.
func (d *Directory) fetch(ctx context.Context, a Address) (Result, error) {
	entries, err := d.search(ctx, d.cfg.AddressFilter, a.String(), 0)
	if err != nil {
		return Result{}, err
	}
	var match []*ldap.Entry
	for _, e := range entries {
		if d.owns(e, a) {
			match = append(match, e)
		}
	}
	switch len(match) {
	case 0:
		return Result{Kind: Unknown, Address: a.String()}, nil
	case 1:
	default:
		d.log.Error("ldap: address belongs to several entries", "address", a.String(), "dn1", match[0].DN, "dn2", match[1].DN)
		return Result{}, fmt.Errorf("%w: %s belongs to several entries (%s, %s)", ErrTemporary, a, match[0].DN, match[1].DN)
	}
	e := match[0]
	res := Result{Address: a.String(), DN: e.DN}
	if d.isList(e) {
		res.Kind = List
		err := d.expand(ctx, e, &res)
		return res, err
	}
	res.Account = d.account(e)
	res.Kind = Account
	if len(res.Account.Forward) > 0 {
		res.Kind = Forward
		res.Forwards = res.Account.Forward
	}
	return res, nil
}

// search runs a filter (with %s replaced by the escaped value) below BaseDN.
// limit 0 asks for at most 2 entries (enough to detect ambiguity).
func (d *Directory) search(ctx context.Context, filter, value string, limit int) ([]*ldap.Entry, error) {
	if limit == 0 {
		limit = 2
	}
	f := strings.ReplaceAll(filter, "%s", ldap.EscapeFilter(value))
	var entries []*ldap.Entry
	err := d.lookup.do(ctx, func(c *ldap.Conn) error {
		r, err := c.Search(ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			limit, 0, false, f, d.attrs, nil))
		if r != nil {
			entries = r.Entries
		}
		if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			return nil
		}
		return err
	})
	return entries, err
}

// byDN reads one entry; nil, nil if it does not exist.
func (d *Directory) byDN(ctx context.Context, dn string) (*ldap.Entry, error) {
	var entry *ldap.Entry
	err := d.lookup.do(ctx, func(c *ldap.Conn) error {
		r, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			1, 0, false, "(objectClass=*)", d.attrs, nil))
		if ldap.IsErrorAnyOf(err, ldap.LDAPResultNoSuchObject, ldap.LDAPResultInvalidDNSyntax) {
			return nil
		}
		if err == nil && len(r.Entries) == 1 {
			entry = r.Entries[0]
		}
		return err
	})
	return entry, err
}

// owns reports whether entry e has address a as its primary address or an
// alias, by the directory's comparison rules (the LDAP server's matching
// rule may be looser, e.g. case-insensitive local parts).
func (d *Directory) owns(e *ldap.Entry, a Address) bool {
	for _, v := range e.GetEqualFoldAttributeValues(d.cfg.AttrMail) {
		if sameAddress(&d.cfg, v, a) {
			return true
		}
	}
	for _, v := range e.GetEqualFoldAttributeValues(d.cfg.AttrAlias) {
		if sameAddress(&d.cfg, v, a) {
			return true
		}
	}
	return false
}

func (d *Directory) isList(e *ldap.Entry) bool {
	for _, oc := range e.GetEqualFoldAttributeValues("objectClass") {
		if strings.EqualFold(oc, d.cfg.ListObjectClass) {
			return true
		}
	}
	return false
}

// expand flattens list e into res.Members and res.Forwards. Lists already on
// the path are loops: skipped with a warning. A list reached twice by
// different paths, and an account reached twice, count once. The members
// of one list are read concurrently (up to ldap-pool-size at a time), in
// chunks, so that a list over the limit fails without reading it all.
func (d *Directory) expand(ctx context.Context, top *ldap.Entry, res *Result) error {
	const chunk = 256
	seen := map[string]bool{normDN(top.DN): true}
	var walk func(list *ldap.Entry, path map[string]bool, depth int) error
	walk = func(list *ldap.Entry, path map[string]bool, depth int) error {
		if depth > d.cfg.ListMaxDepth {
			return fmt.Errorf("%w: lists nest deeper than %d at %s", ErrListLimit, d.cfg.ListMaxDepth, list.DN)
		}
		var todo []string
		for _, m := range list.GetEqualFoldAttributeValues(d.cfg.AttrMember) {
			key := normDN(m)
			if path[key] {
				res.Warnings = append(res.Warnings, fmt.Sprintf("loop: %s is a member of %s, which it contains", m, list.DN))
				continue
			}
			if seen[key] || m == "" {
				continue
			}
			seen[key] = true
			todo = append(todo, m)
		}
		for len(todo) > 0 {
			batch := todo[:min(chunk, len(todo))]
			todo = todo[len(batch):]
			entries, err := d.byDNs(ctx, batch)
			if err != nil {
				return err
			}
			for i, e := range entries {
				if err := d.addMember(batch[i], e, res, func() error {
					key := normDN(e.DN)
					path[key] = true
					defer delete(path, key)
					return walk(e, path, depth+1)
				}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(top, map[string]bool{normDN(top.DN): true}, 1)
}

// addMember adds list member entry e (nil: missing) to res; a nested list
// is handed to nested.
func (d *Directory) addMember(dn string, e *ldap.Entry, res *Result, nested func() error) error {
	switch {
	case e == nil:
		res.Warnings = append(res.Warnings, "missing member: "+dn)
		return nil
	case d.isList(e):
		return nested()
	}
	acc := d.account(e)
	switch {
	case len(acc.Forward) > 0:
		res.Forwards = append(res.Forwards, acc.Forward...)
	case !acc.Enabled:
		res.Warnings = append(res.Warnings, "disabled member skipped: "+dn)
	case acc.Address == "":
		res.Warnings = append(res.Warnings, "member without an address skipped: "+dn)
	default:
		res.Members = append(res.Members, acc)
	}
	if len(res.Members)+len(res.Forwards) > d.cfg.ListMaxMembers {
		return fmt.Errorf("%w: %s expands to more than %d recipients", ErrListLimit, res.Address, d.cfg.ListMaxMembers)
	}
	return nil
}

// byDNs reads entries concurrently; nil for those that do not exist.
func (d *Directory) byDNs(ctx context.Context, dns []string) ([]*ldap.Entry, error) {
	out := make([]*ldap.Entry, len(dns))
	errs := make([]error, len(dns))
	sem := make(chan struct{}, d.cfg.PoolSize)
	var wg sync.WaitGroup
	for i, dn := range dns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			out[i], errs[i] = d.byDN(ctx, dn)
			<-sem
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// normDN is a DN's comparison key: parsed and re-joined in lower case, or
// the lower-cased string when it does not parse.
func normDN(dn string) string {
	p, err := ldap.ParseDN(dn)
	if err != nil {
		return strings.ToLower(dn)
	}
	var parts []string
	for _, rdn := range p.RDNs {
		var as []string
		for _, at := range rdn.Attributes {
			as = append(as, strings.ToLower(at.Type)+"="+strings.ToLower(at.Value))
		}
		parts = append(parts, strings.Join(as, "+"))
	}
	return strings.Join(parts, ",")
}

// entryAttrs lists the attributes an account or list lookup reads.
func entryAttrs(cfg *Config) []string {
	out := []string{"objectClass"}
	for _, a := range []string{cfg.AttrID, cfg.AttrMail, cfg.AttrAlias, cfg.AttrLogin, cfg.AttrBackend, cfg.AttrForward,
		cfg.AttrQuotaBytes, cfg.AttrQuotaMessages, cfg.AttrEnabled, cfg.AttrMember, cfg.AttrName} {
		if attr(a) {
			out = append(out, a)
		}
	}
	return out
}

// account reads an account entry's attributes.
func (d *Directory) account(e *ldap.Entry) AccountInfo {
	return accountFrom(&d.cfg, e)
}

func accountFrom(cfg *Config, e *ldap.Entry) AccountInfo {
	get := func(a string) string {
		if !attr(a) {
			return ""
		}
		return e.GetEqualFoldAttributeValue(a)
	}
	acc := AccountInfo{DN: e.DN, Address: stripSMTP(get(cfg.AttrMail)), Login: get(cfg.AttrLogin),
		Name: get(cfg.AttrName), Backend: get(cfg.AttrBackend), Enabled: true}
	if strings.EqualFold(cfg.AttrID, "objectGUID") {
		acc.ID = guidString(e.GetEqualFoldRawAttributeValue(cfg.AttrID))
	} else {
		acc.ID = get(cfg.AttrID)
	}
	for _, v := range e.GetEqualFoldAttributeValues(cfg.AttrAlias) {
		v = stripSMTP(v)
		if strings.Contains(v, "@") && !strings.EqualFold(v, acc.Address) {
			acc.Aliases = append(acc.Aliases, v)
		}
	}
	if attr(cfg.AttrForward) {
		for _, v := range e.GetEqualFoldAttributeValues(cfg.AttrForward) {
			if v = stripSMTP(v); v != "" {
				acc.Forward = append(acc.Forward, v)
			}
		}
	}
	acc.Quota.StorageBytes = parseInt(get(cfg.AttrQuotaBytes))
	acc.Quota.Messages = parseInt(get(cfg.AttrQuotaMessages))
	if v := get(cfg.AttrEnabled); v != "" {
		switch cfg.EnabledMode {
		case EnabledADUAC:
			acc.Enabled = parseInt(v)&2 == 0
		default:
			acc.Enabled = !strings.EqualFold(v, "FALSE")
		}
	}
	return acc
}

func parseInt(s string) int64 {
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil || n < 0 {
		return 0
	}
	return n
}

// guidString formats an Active Directory objectGUID (16 bytes, the first
// three fields little-endian) as a UUID string.
func guidString(b []byte) string {
	if len(b) != 16 {
		return fmt.Sprintf("%x", b)
	}
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%x-%x",
		b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8:10], b[10:16])
}

// flight makes concurrent lookups of one key share a single LDAP query.
type flight struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

type flightCall struct {
	done chan struct{}
	res  Result
	err  error
}

func (f *flight) do(key string, fn func() (Result, error)) (Result, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*flightCall{}
	}
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		<-c.done
		return c.res, c.err
	}
	c := &flightCall{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()
	c.res, c.err = fn()
	f.mu.Lock()
	delete(f.calls, key)
	f.mu.Unlock()
	close(c.done)
	return c.res, c.err
}

// Authenticate checks a login and password: it finds the one account the
// login filter matches (login is the escaped %s; an address login is
// normalised like a recipient first) and binds as that entry, so any hash
// the LDAP server supports works. Logins or passwords that are empty, too
// long, or contain NUL or control characters fail as bad credentials without
// reaching LDAP.
//
// Failures are remembered per (login, client IP) and per client IP (IPv6 by
// /64); later attempts from there wait auth-delay-base, doubling per failure
// up to auth-delay-max, before they are checked. No account is locked: the
// same login from another address is not delayed by the first address's
// failures. A successful login clears its (login, IP) record.
//
// A login and password that LDAP accepted are accepted again without
// asking LDAP for auth-cache-ttl after that bind (0: never), also while
// LDAP is down, with the account as it was then: a password changed or an
// account disabled in LDAP takes effect after at most that long. Only a
// keyed hash of the login and password is kept, and a failed login drops
// its login's entries (see credCache).
//
// Errors: ErrBadCredentials, ErrDisabled (only after a correct password;
// the account is returned with it, for logging), ErrTemporary, or ctx's
// error while delayed.
func (d *Directory) Authenticate(ctx context.Context, login, password string, clientIP netip.Addr) (AccountInfo, error) {
	acct, err := d.authenticate(ctx, login, password, clientIP)
	d.metrics.login(err)
	return acct, err
}

func (d *Directory) authenticate(ctx context.Context, login, password string, clientIP netip.Addr) (AccountInfo, error) {
	key := login
	valid := validLogin(login) && password != "" && len(password) <= 1024 && !strings.ContainsRune(password, 0)
	if valid && strings.Contains(login, "@") {
		if a, err := normalize(&d.cfg, login); err == nil {
			key = a.String()
		}
	}
	if delay := d.throttle.delay(key, clientIP); delay > 0 {
		d.log.Debug("auth: delaying attempt after failures", "ip", clientIP, "delay", delay)
		if err := d.opt.sleep(ctx, delay); err != nil {
			return AccountInfo{}, err
		}
	}
	if !valid {
		d.throttle.fail(key, clientIP)
		return AccountInfo{}, ErrBadCredentials
	}
	if ttl := d.cfg.AuthCacheTTL; ttl > 0 {
		if acc, ok := d.creds.get(key, password, d.opt.now().Add(-ttl)); ok {
			d.throttle.success(key, clientIP)
			return acc, nil
		}
	}
	entries, err := d.search(ctx, d.cfg.LoginFilter, key, 0)
	if err != nil {
		return AccountInfo{}, err
	}
	if len(entries) != 1 {
		if len(entries) > 1 {
			d.log.Error("auth: login matches several entries", "login", key, "dn1", entries[0].DN, "dn2", entries[1].DN)
		}
		d.throttle.fail(key, clientIP)
		d.creds.forget(key)
		return AccountInfo{}, ErrBadCredentials
	}
	e := entries[0]
	err = d.auth.do(ctx, func(c *ldap.Conn) error { return c.Bind(e.DN, password) })
	if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		d.throttle.fail(key, clientIP)
		d.creds.forget(key)
		return AccountInfo{}, ErrBadCredentials
	}
	if err != nil {
		return AccountInfo{}, classify(err)
	}
	acc := d.account(e)
	d.throttle.success(key, clientIP)
	if !acc.Enabled {
		d.creds.forget(key)
		return acc, ErrDisabled
	}
	if d.cfg.AuthCacheTTL > 0 {
		d.creds.put(key, password, acc, d.opt.now())
	}
	return acc, nil
}

func validLogin(s string) bool {
	if s == "" || len(s) > maxAddressLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
