package directory

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// cache maps normalised addresses to answers. It holds at most max entries;
// when full, an arbitrary tenth is dropped (map iteration order), which is
// enough for a cache whose entries live minutes.
type cache struct {
	mu  sync.Mutex
	m   map[string]cacheEntry
	max int
}

type cacheEntry struct {
	res     Result
	err     error // a permanent failure (ErrListLimit), cached like a negative answer
	fetched time.Time
}

func newCache(max int) *cache { return &cache{m: map[string]cacheEntry{}, max: max} }

func (c *cache) get(key string) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	return e, ok
}

func (c *cache) put(key string, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok {
		makeRoom(c.m, c.max)
	}
	c.m[key] = e
}

// throttle remembers failed logins per (login, client IP) and per client IP
// and says how long the next attempt must wait.
type throttle struct {
	cfg       *Config
	now       func() time.Time
	mu        sync.Mutex
	m         map[string]failures
	lastPrune time.Time
}

type failures struct {
	n    int
	last time.Time
}

func newThrottle(cfg *Config, now func() time.Time) *throttle {
	return &throttle{cfg: cfg, now: now, m: map[string]failures{}}
}

// ipKey groups client addresses: IPv4 by address, IPv6 by /64 (one
// customer's network), unknown addresses together.
func ipKey(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid():
		return "?"
	case ip.Is6():
		p, _ := ip.Prefix(64)
		return p.String()
	default:
		return ip.String()
	}
}

// keys returns the failure keys of an attempt; logins compare
// case-insensitively (as LDAP matches them), so case variants share one.
func (t *throttle) keys(login string, ip netip.Addr) (pair, addr string) {
	k := ipKey(ip)
	return "l\x00" + strings.ToLower(login) + "\x00" + k, "i\x00" + k
}

// count returns the live failures under key.
func (t *throttle) count(key string, now time.Time) int {
	f, ok := t.m[key]
	if !ok || now.Sub(f.last) > t.cfg.AuthFailTTL {
		return 0
	}
	return f.n
}

// backoff is base·2^(n-1), at most max; 0 for n ≤ 0.
func (t *throttle) backoff(n int) time.Duration {
	if n <= 0 || t.cfg.AuthDelayBase == 0 {
		return 0
	}
	d := t.cfg.AuthDelayBase
	for i := 1; i < n && d < t.cfg.AuthDelayMax; i++ {
		d *= 2
	}
	return min(d, t.cfg.AuthDelayMax)
}

// delay is how long an attempt for login from ip must wait.
func (t *throttle) delay(login string, ip netip.Addr) time.Duration {
	pair, addr := t.keys(login, ip)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	return max(t.backoff(t.count(pair, now)), t.backoff(t.count(addr, now)-t.cfg.AuthFailFree))
}

func (t *throttle) fail(login string, ip netip.Addr) {
	pair, addr := t.keys(login, ip)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range []string{pair, addr} {
		t.m[k] = failures{n: t.count(k, now) + 1, last: now}
	}
	if len(t.m) > 10000 && now.Sub(t.lastPrune) > time.Minute {
		t.lastPrune = now
		for k, f := range t.m {
			if now.Sub(f.last) > t.cfg.AuthFailTTL {
				delete(t.m, k)
			}
		}
	}
}

func (t *throttle) success(login string, ip netip.Addr) {
	pair, _ := t.keys(login, ip)
	t.mu.Lock()
	delete(t.m, pair)
	t.mu.Unlock()
}

// credCache remembers logins that LDAP accepted, for AuthCacheTTL from the
// bind that verified them, so that a client that logs in again (mail
// clients open several connections, POP3 clients poll) costs no search and
// bind. The password is not kept: an entry holds an HMAC-SHA256, under a
// key drawn at random when the Directory is made, of the login and
// password. Logins compare case-insensitively, as LDAP matches them. A
// failed login (wrong password, disabled, no such login) drops every entry
// of its login; disabled accounts are never entered. At most max logins are
// held; when full, an arbitrary tenth is dropped.
type credCache struct {
	key []byte
	mu  sync.Mutex
	m   map[string][]credEntry // by lower-case login
	max int
}

type credEntry struct {
	sum      [sha256.Size]byte
	acc      AccountInfo
	verified time.Time
}

// maxCredsPerLogin bounds the passwords remembered for one login (a
// password change leaves the old one until it expires).
const maxCredsPerLogin = 4

func newCredCache(max int) *credCache {
	key := make([]byte, 32)
	rand.Read(key)
	return &credCache{key: key, m: map[string][]credEntry{}, max: max}
}

func (c *credCache) sum(login, password string) [sha256.Size]byte {
	h := hmac.New(sha256.New, c.key)
	h.Write([]byte(login))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// get returns the account of a login and password verified after since.
func (c *credCache) get(login, password string, since time.Time) (AccountInfo, bool) {
	login = strings.ToLower(login)
	sum := c.sum(login, password)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.m[login] {
		if hmac.Equal(e.sum[:], sum[:]) && e.verified.After(since) {
			return e.acc, true
		}
	}
	return AccountInfo{}, false
}

// put remembers a login and password that LDAP accepted at now.
func (c *credCache) put(login, password string, acc AccountInfo, now time.Time) {
	login = strings.ToLower(login)
	sum := c.sum(login, password)
	c.mu.Lock()
	defer c.mu.Unlock()
	es, ok := c.m[login]
	if !ok {
		makeRoom(c.m, c.max)
	}
	kept := es[:0]
	for _, e := range es {
		if !hmac.Equal(e.sum[:], sum[:]) {
			kept = append(kept, e)
		}
	}
	if len(kept) >= maxCredsPerLogin {
		kept = append(kept[:0], kept[1:]...)
	}
	c.m[login] = append(kept, credEntry{sum: sum, acc: acc, verified: now})
}

// forget drops every entry of a login.
func (c *credCache) forget(login string) {
	login = strings.ToLower(login)
	c.mu.Lock()
	delete(c.m, login)
	c.mu.Unlock()
}

// makeRoom drops a tenth of m's entries (at least one, in map order, so
// effectively at random) when m holds limit or more, before an insert.
func makeRoom[K comparable, V any](m map[K]V, limit int) {
	if len(m) < limit {
		return
	}
	drop := max(limit/10, 1)
	for k := range m {
		if drop == 0 {
			return
		}
		delete(m, k)
		drop--
	}
}
