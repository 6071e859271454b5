package outbound

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// host is one place to try: an MX host, the domain itself when it has no MX
// records (the implicit MX of RFC 5321 section 5.1), an address literal, or
// the relay.
type host struct {
	name     string     // for RemoteMTA and logs, without the trailing dot
	best     bool       // of the lowest MX preference: its connections may serve the whole domain
	implicit bool       // the domain itself
	literal  netip.Addr // valid for an address literal
	relay    bool
}

// asciiDomain returns domain in A-labels, without a trailing dot, or an
// error when it is not a syntactically valid domain name or address literal.
// U-labels are converted with the IDNA lookup profile (RFC 5891 section 5).
func asciiDomain(domain string) (string, error) {
	domain = strings.TrimSuffix(domain, ".")
	if strings.HasPrefix(domain, "[") {
		if _, err := addressLiteral(domain); err != nil {
			return "", err
		}
		return domain, nil
	}
	if !isASCII(domain) {
		a, err := idna.Lookup.ToASCII(domain)
		if err != nil {
			return "", fmt.Errorf("domain %q: %v", domain, err)
		}
		domain = a
	}
	domain = strings.ToLower(domain)
	if domain == "" || len(domain) > 253 {
		return "", fmt.Errorf("domain %q: bad length", domain)
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("domain %q: bad label %q", domain, label)
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("domain %q: bad character %q", domain, c)
			}
		}
	}
	return domain, nil
}

// addressLiteral parses "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321
// section 4.1.3).
func addressLiteral(s string) (netip.Addr, error) {
	inner, ok := strings.CutPrefix(s, "[")
	inner, ok2 := strings.CutSuffix(inner, "]")
	if !ok || !ok2 {
		return netip.Addr{}, fmt.Errorf("address literal %q: missing brackets", s)
	}
	v6, isV6 := strings.CutPrefix(inner, "IPv6:")
	if !isV6 {
		v6, isV6 = strings.CutPrefix(inner, "ipv6:")
	}
	if isV6 {
		a, err := netip.ParseAddr(v6)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, fmt.Errorf("address literal %q: bad IPv6 address", s)
		}
		return a, nil
	}
	a, err := netip.ParseAddr(inner)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("address literal %q: bad IPv4 address", s)
	}
	return a, nil
}

// route returns the hosts to try for domain (already checked by
// asciiDomain), in order, or the outcome for every recipient when there is
// no host to try.
//
// MX records are ordered by preference, equal preferences shuffled (RFC 5321
// section 5.1). A null MX (RFC 7505: the only record, with host ".") fails
// permanently; records "." among others are ignored. Go's resolver reports
// NXDOMAIN and "no MX records" alike (a *net.DNSError with IsNotFound), so
// both lead to the implicit MX: the domain's own A/AAAA records, whose
// absence then fails permanently as "domain not found".
func (t *Transport) route(ctx context.Context, domain string) ([]host, *outcome) {
	if t.cfg.Relay != "" {
		h, _, _ := net.SplitHostPort(t.cfg.Relay)
		return []host{{name: h, best: true, relay: true}}, nil
	}
	if strings.HasPrefix(domain, "[") {
		a, _ := addressLiteral(domain)
		return []host{{name: domain, best: true, literal: a}}, nil
	}
	lctx, cancel := context.WithTimeout(ctx, t.cfg.DNSTimeout)
	defer cancel()
	mxs, err := t.resolver.LookupMX(lctx, domain+".")
	if err != nil && len(mxs) == 0 {
		if isNotFound(err) {
			return []host{{name: domain, best: true, implicit: true}}, nil
		}
		return nil, dnsFailure(ctx, "MX", domain, err)
	}
	if err != nil {
		// Some records had invalid host names; Go dropped them.
		t.log.Warn("MX records with invalid host names ignored", "domain", domain, "err", err)
	}
	if len(mxs) == 1 && mxs[0].Host == "." {
		return nil, &outcome{
			enhanced:  "5.1.10",
			message:   fmt.Sprintf("domain %s does not accept mail (null MX)", domain),
			permanent: true,
		}
	}
	mxs = slices.DeleteFunc(mxs, func(mx *net.MX) bool { return mx.Host == "." })
	if len(mxs) == 0 {
		return nil, &outcome{
			enhanced:  "5.4.4",
			message:   fmt.Sprintf("domain %s has only invalid MX records", domain),
			permanent: true,
		}
	}
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	hosts := make([]host, 0, len(mxs))
	for _, mx := range mxs {
		name := strings.ToLower(strings.TrimSuffix(mx.Host, "."))
		h := host{name: name, best: mx.Pref == mxs[0].Pref}
		if a, err := netip.ParseAddr(name); err == nil {
			// Not allowed (RFC 5321 section 5.1), but seen and tolerated.
			h.literal = a
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// addresses returns the "ip:port" (for the relay "host:port") addresses of
// h in the order to try them, or the outcome when h has none: permanent when
// the name has no A/AAAA records, temporary when the lookup failed.
func (t *Transport) addresses(ctx context.Context, h host) ([]string, *outcome) {
	port := strconv.Itoa(t.cfg.Port)
	switch {
	case h.relay:
		return []string{t.cfg.Relay}, nil
	case h.literal.IsValid():
		return []string{netip.AddrPortFrom(h.literal, uint16(t.cfg.Port)).String()}, nil
	}
	lctx, cancel := context.WithTimeout(ctx, t.cfg.DNSTimeout)
	defer cancel()
	ips, err := t.resolver.LookupNetIP(lctx, "ip", h.name+".")
	if err != nil || len(ips) == 0 {
		if err == nil || isNotFound(err) {
			if h.implicit {
				return nil, &outcome{
					enhanced:  "5.1.2",
					message:   fmt.Sprintf("domain %s not found (no MX, A or AAAA records)", h.name),
					permanent: true,
				}
			}
			return nil, &outcome{
				enhanced:  "5.4.4",
				message:   fmt.Sprintf("MX host %s has no A or AAAA records", h.name),
				permanent: true,
			}
		}
		return nil, dnsFailure(ctx, "A/AAAA", h.name, err)
	}
	addrs := make([]string, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, net.JoinHostPort(ip.Unmap().String(), port))
	}
	return addrs, nil
}

func isNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// dnsFailure is the temporary outcome of a DNS lookup that failed (SERVFAIL,
// timeout, unreachable server), unless ctx ended.
func dnsFailure(ctx context.Context, qtype, name string, err error) *outcome {
	if ctx.Err() != nil {
		o := canceledOutcome(ctx)
		return &o
	}
	return &outcome{enhanced: "4.4.3", message: fmt.Sprintf("DNS %s lookup for %s failed: %v", qtype, name, err)}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
