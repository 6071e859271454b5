package directory_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"mailcluster/directory"
	"mailcluster/internal/testenv"
)

// benchUsers is how many accounts the benchmarks' tree holds.
const benchUsers = 2000

// sshaSecret is "secret" hashed with {SSHA} (slappasswd), as the admin
// command's Password Modify leaves it with slapd's default password-hash.
const sshaSecret = "{SSHA}tnff4CfBjImIMd6RD4r2uXVrMgdbg5rT"

// benchTree seeds benchUsers accounts (user0@ … with password "secret") in
// one ldapadd and returns a configuration for them.
func benchTree(b *testing.B) directory.Config {
	b.Helper()
	s := testenv.StartSlapd(b)
	tr := s.NewTree(b)
	var ldif strings.Builder
	for i := 0; i < benchUsers; i++ {
		ldif.WriteString(strings.Replace(userLDIF(tr.PeopleDN, fmt.Sprintf("user%d", i), fmt.Sprintf("user%d@example.test", i),
			fmt.Sprintf("mailHost: backend-%d", i%4), "mailclusterQuotaBytes: 1073741824"), "userPassword: secret", "userPassword: "+sshaSecret, 1))
		ldif.WriteString("\n")
	}
	ldif.WriteString("dn: cn=big," + tr.ListsDN + "\nobjectClass: groupOfNames\nobjectClass: mailclusterList\ncn: big\nmail: big@example.test\n")
	for i := 0; i < benchListSize; i++ {
		fmt.Fprintf(&ldif, "member: uid=user%d,%s\n", i, tr.PeopleDN)
	}
	s.AddLDIF(b, ldif.String())
	return configFor(s.URL, tr.BaseDN)
}

// benchListSize is the number of members of the list big@example.test.
const benchListSize = 500

// BenchmarkResolveList measures expanding a 500-member list, uncached.
func BenchmarkResolveList(b *testing.B) {
	cfg := benchTree(b)
	cfg.CacheTTL, cfg.NegativeCacheTTL = 1, 0
	d := newDir(b, cfg)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := d.Resolve(ctx, "big@example.test")
		if err != nil || len(r.Members) != benchListSize {
			b.Fatalf("big: %d members, %v", len(r.Members), err)
		}
	}
	b.ReportMetric(float64(b.N*benchListSize)/b.Elapsed().Seconds(), "members/s")
}

// BenchmarkResolve measures Resolve of an account from several goroutines:
// "warm" answers from the cache; "miss" asks slapd every time (cache TTL 1ns).
func BenchmarkResolve(b *testing.B) {
	cfg := benchTree(b)
	for _, c := range []struct {
		name string
		ttl  int64
	}{{"warm", 0}, {"miss", 1}} {
		b.Run(c.name, func(b *testing.B) {
			cfg := cfg
			if c.ttl > 0 {
				cfg.CacheTTL, cfg.NegativeCacheTTL = 1, 0
			}
			d := newDir(b, cfg)
			ctx := context.Background()
			if c.ttl == 0 { // warm the cache
				for i := 0; i < benchUsers; i++ {
					if _, err := d.Resolve(ctx, fmt.Sprintf("user%d@example.test", i)); err != nil {
						b.Fatal(err)
					}
				}
			}
			parallel(b, "lookups/s", func(addr string) error {
				r, err := d.Resolve(ctx, addr)
				if err == nil && r.Kind != directory.Account {
					err = fmt.Errorf("resolved to %v", r.Kind)
				}
				return err
			})
		})
	}
}

// BenchmarkAuthenticate measures search-then-bind logins ({SSHA} hashes)
// from several goroutines.
func BenchmarkAuthenticate(b *testing.B) {
	cfg := benchTree(b)
	cfg.AuthCacheTTL = 0 // every login a search and a bind, as this measures
	d := newDir(b, cfg)
	ctx := context.Background()
	parallel(b, "auths/s", func(addr string) error {
		_, err := d.Authenticate(ctx, addr, "secret", loopback)
		return err
	})
}

// parallel runs op on the benchmark accounts' addresses in turn from 8
// goroutines (4 per core: concurrent sessions) and reports ops per second
// as unit.
func parallel(b *testing.B, unit string, op func(addr string) error) {
	var n atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			addr := fmt.Sprintf("user%d@example.test", n.Add(1)%benchUsers)
			if err := op(addr); err != nil {
				b.Errorf("%s: %v", addr, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}
