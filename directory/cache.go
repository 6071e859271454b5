package directory

import (
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
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		drop := max(c.max/10, 1)
		for k := range c.m {
			if drop == 0 {
				break
			}
			delete(c.m, k)
			drop--
		}
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
