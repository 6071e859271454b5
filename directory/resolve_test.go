package directory_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"mailcluster/directory"
	"mailcluster/internal/testenv"
)

func TestResolveAccount(t *testing.T) {
	f := newFixture(t)
	f.user("alice", "alice@example.test",
		"mailLocalAddress: a.smith@example.test", "mailLocalAddress: alice@other.test",
		"mailHost: backend-2", "mailclusterQuotaBytes: 1048576", "mailclusterQuotaMessages: 500")
	f.user("bob", "Bob@Example.test", "mailclusterEnabled: FALSE")
	f.user("carol", "carol@example.test", "mailRoutingAddress: carol@elsewhere.example")
	f.user("plusbox", "plus+box@example.test")
	cfg := f.config()
	cfg.LocalDomains = []string{"example.test", "Other.Test"}
	d := newDir(t, cfg)

	r := resolve(t, d, "alice@example.test")
	if r.Kind != directory.Account || r.Account.Address != "alice@example.test" || r.Account.Backend != "backend-2" ||
		r.Account.Quota != (directory.Quota{StorageBytes: 1048576, Messages: 500}) || !r.Account.Enabled ||
		r.Account.Login != "alice" || r.DN != f.userDN("alice") {
		t.Fatalf("alice: %+v", r)
	}
	if len(r.Account.ID) != 36 { // entryUUID
		t.Fatalf("alice has id %q, want an entryUUID", r.Account.ID)
	}
	if want := []string{"a.smith@example.test", "alice@other.test"}; !slices.Equal(sorted(r.Account.Aliases), want) {
		t.Fatalf("aliases %v, want %v", r.Account.Aliases, want)
	}
	id := r.Account.ID

	for _, addr := range []string{"a.smith@example.test", "ALICE@EXAMPLE.TEST", "alice@example.test.", "Alice@Other.test",
		"alice+news@example.test", "a.smith+x+y@EXAMPLE.test"} {
		r := resolve(t, d, addr)
		if r.Kind != directory.Account || r.Account.ID != id {
			t.Errorf("%s: %v %q, want alice's account", addr, r.Kind, r.Account.ID)
		}
	}
	if r := resolve(t, d, "alice+news@example.test"); r.Detail != "news" || r.Address != "alice@example.test" {
		t.Errorf("subaddress: detail %q address %q", r.Detail, r.Address)
	}
	// A local part that really contains the separator is found as it is.
	if r := resolve(t, d, "plus+box@example.test"); r.Kind != directory.Account || r.Detail != "" || r.Account.Login != "plusbox" {
		t.Errorf("plus+box: %+v", r)
	}
	if r := resolve(t, d, "bob@example.test"); r.Kind != directory.Account || r.Account.Enabled {
		t.Errorf("disabled bob: %v enabled=%v", r.Kind, r.Account.Enabled)
	}
	r = resolve(t, d, "carol@example.test")
	if r.Kind != directory.Forward || !slices.Equal(r.Forwards, []string{"carol@elsewhere.example"}) {
		t.Errorf("carol: %+v", r)
	}
	for _, addr := range []string{"nobody@example.test", "alice.smith@example.test", "+alice@example.test"} {
		if r := resolve(t, d, addr); r.Kind != directory.Unknown {
			t.Errorf("%s: %v, want unknown", addr, r.Kind)
		}
	}
	if r := resolve(t, d, "alice@remote.example"); r.Kind != directory.NotLocal {
		t.Errorf("remote domain: %v, want not-local", r.Kind)
	}
	for _, bad := range []string{"", "alice", "@example.test", "alice@", "al ice@example.test", "alice\x00@example.test",
		"alice@exa(mple.test", "\xff@example.test"} {
		if _, err := d.Resolve(context.Background(), bad); !errors.Is(err, directory.ErrInvalidAddress) {
			t.Errorf("Resolve(%q): %v, want ErrInvalidAddress", bad, err)
		}
	}
	// Filter metacharacters in an address are data, not filter syntax.
	for _, addr := range []string{"*@example.test", "a*@example.test", "*)(mail=*@example.test", "alice@*"} {
		if r, err := d.Resolve(context.Background(), addr); err == nil && r.Kind != directory.Unknown && r.Kind != directory.NotLocal {
			t.Errorf("%q resolved to %v %s", addr, r.Kind, r.DN)
		}
	}
}

func TestResolveCaseSensitiveLocalParts(t *testing.T) {
	f := newFixture(t)
	f.user("u", "MixedCase@example.test")
	cfg := f.config()
	cfg.FoldLocalPart = false
	cfg.SubaddressSeparator = "-+"
	d := newDir(t, cfg)
	if r := resolve(t, d, "MixedCase@EXAMPLE.test"); r.Kind != directory.Account {
		t.Fatalf("exact local part: %v", r.Kind)
	}
	if r := resolve(t, d, "mixedcase@example.test"); r.Kind != directory.Unknown {
		t.Fatalf("other case with folding off: %v, want unknown", r.Kind)
	}
	if r := resolve(t, d, "MixedCase-tag@example.test"); r.Kind != directory.Account || r.Detail != "tag" {
		t.Fatalf("second separator: %+v", r)
	}
}

func TestResolveLists(t *testing.T) {
	f := newFixture(t)
	for _, u := range []string{"a", "b", "c", "d"} {
		f.user(u, u+"@example.test")
	}
	f.user("off", "off@example.test", "mailclusterEnabled: FALSE")
	f.user("fwd", "fwd@example.test", "mailRoutingAddress: fwd@elsewhere.example")
	// inner ⊂ outer, both contain b (counted once); loop1 ↔ loop2.
	f.list("inner", "inner@example.test", f.userDN("b"), f.userDN("c"), f.userDN("off"))
	f.list("outer", "outer@example.test", f.userDN("a"), f.userDN("b"), f.listDN("inner"), f.userDN("fwd"),
		"uid=ghost,"+f.tree.PeopleDN)
	f.s.AddLDIF(t, "dn: "+f.listDN("loop1")+"\nobjectClass: groupOfNames\nobjectClass: mailclusterList\ncn: loop1\nmail: loop1@example.test\nmember: "+f.userDN("a")+"\n")
	f.list("loop2", "loop2@example.test", f.listDN("loop1"), f.userDN("d"))
	f.s.AddLDIF(t, "dn: "+f.listDN("loop1")+"\nchangetype: modify\nadd: member\nmember: "+f.listDN("loop2")+"\n")
	d := newDir(t, f.config())

	r := resolve(t, d, "outer@example.test")
	if r.Kind != directory.List || r.DN != f.listDN("outer") {
		t.Fatalf("outer: %+v", r)
	}
	if got, want := addresses(r.Members), []string{"a@example.test", "b@example.test", "c@example.test"}; !slices.Equal(got, want) {
		t.Fatalf("outer members %v, want %v", got, want)
	}
	if !slices.Equal(r.Forwards, []string{"fwd@elsewhere.example"}) {
		t.Fatalf("outer forwards %v", r.Forwards)
	}
	if len(r.Warnings) != 2 { // disabled "off", missing "ghost"
		t.Fatalf("outer warnings %q, want disabled and missing member", r.Warnings)
	}

	for _, l := range []string{"loop1@example.test", "LOOP2@example.test"} {
		r := resolve(t, d, l)
		if got, want := addresses(r.Members), []string{"a@example.test", "d@example.test"}; !slices.Equal(got, want) {
			t.Fatalf("%s members %v, want %v", l, got, want)
		}
		if len(r.Warnings) != 1 {
			t.Fatalf("%s warnings %q, want one loop", l, r.Warnings)
		}
	}

	// Limits.
	cfg := f.config()
	cfg.ListMaxMembers = 2
	small := newDir(t, cfg)
	if _, err := small.Resolve(context.Background(), "outer@example.test"); !errors.Is(err, directory.ErrListLimit) {
		t.Fatalf("4 recipients with limit 2: %v, want ErrListLimit", err)
	}
	if r := resolve(t, small, "inner@example.test"); len(r.Members) != 2 {
		t.Fatalf("inner within the limit: %+v", r)
	}
	cfg = f.config()
	cfg.ListMaxDepth = 1
	flat := newDir(t, cfg)
	if _, err := flat.Resolve(context.Background(), "outer@example.test"); !errors.Is(err, directory.ErrListLimit) {
		t.Fatalf("nesting 2 with depth 1: %v, want ErrListLimit", err)
	}
}

// TestSeedLDIF loads deploy/ldap/seed.ldif into a fresh slapd and checks the
// demo data it promises.
func TestSeedLDIF(t *testing.T) {
	s := testenv.NewSlapd(t, testenv.SlapdOptions{Seed: filepath.Join(testenv.RepoRoot(), "deploy", "ldap", "seed.ldif")})
	cfg := configFor(s.URL, testenv.SlapdSuffix)
	cfg.BindDN, cfg.BindPassword = "cn=mailcluster,ou=services,dc=example,dc=test", "mailcluster-reader"
	d := newDir(t, cfg)
	if err := d.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, addr := range []string{"user1@example.test", "user10@example.test", "postmaster@example.test"} {
		if r := resolve(t, d, addr); r.Kind != directory.Account || r.Account.Backend == "" {
			t.Errorf("%d %s: %+v", i, addr, r)
		}
	}
	if r := resolve(t, d, "all@example.test"); len(r.Members) != 3 || len(r.Forwards) != 1 {
		t.Errorf("all@: %+v", r)
	}
	if _, err := d.Authenticate(context.Background(), "user7@example.test", "secret", loopback); err != nil {
		t.Errorf("user7/secret: %v", err)
	}
	if _, err := d.Authenticate(context.Background(), "disabled", "secret", loopback); !errors.Is(err, directory.ErrDisabled) {
		t.Errorf("disabled/secret: %v", err)
	}
}

func addresses(accs []directory.AccountInfo) []string {
	var out []string
	for _, a := range accs {
		out = append(out, a.Address)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// TestResolveLargeList expands a list over several read chunks, with a
// nested list repeating some of its members.
func TestResolveLargeList(t *testing.T) {
	f := newFixture(t)
	var ldif strings.Builder
	var members []string
	for i := 0; i < 600; i++ {
		uid := fmt.Sprintf("m%d", i)
		ldif.WriteString(userLDIF(f.tree.PeopleDN, uid, uid+"@example.test") + "\n")
		members = append(members, f.userDN(uid))
	}
	f.s.AddLDIF(t, ldif.String())
	f.list("sub", "sub@example.test", members[500:]...)
	f.list("big", "big@example.test", append(members[:550], f.listDN("sub"))...)

	cfg := f.config()
	cfg.ListMaxMembers = 600
	r := resolve(t, newDir(t, cfg), "big@example.test")
	if len(r.Members) != 600 || len(r.Warnings) != 0 {
		t.Fatalf("big: %d members, warnings %q; want 600 and none", len(r.Members), r.Warnings)
	}
	got := map[string]bool{}
	for _, m := range r.Members {
		got[m.Address] = true
	}
	if len(got) != 600 {
		t.Fatalf("big: %d distinct members, want 600", len(got))
	}
	cfg.ListMaxMembers = 599
	if _, err := newDir(t, cfg).Resolve(context.Background(), "big@example.test"); !errors.Is(err, directory.ErrListLimit) {
		t.Fatalf("600 recipients with limit 599: %v", err)
	}
}

// TestDeploySlapdConf checks deploy/ldap/slapd.conf (with its paths moved to
// a temporary directory): slaptest accepts it and seed.ldif loads into it.
func TestDeploySlapdConf(t *testing.T) {
	slapd, err := testenv.SlapdPath()
	if err != nil {
		t.Fatal(err)
	}
	deploy := filepath.Join(testenv.RepoRoot(), "deploy", "ldap")
	conf, err := os.ReadFile(filepath.Join(deploy, "slapd.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(conf), "/var/lib/mailcluster-ldap", dir)
	text = strings.ReplaceAll(text, "/etc/ldap/schema/mailcluster.schema", filepath.Join(deploy, "mailcluster.schema"))
	if text == string(conf) {
		t.Fatal("deploy/ldap/slapd.conf no longer uses the paths this test moves")
	}
	path := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Dir(slapd)
	if out, err := exec.Command(filepath.Join(bin, "slaptest"), "-Q", "-u", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("slaptest: %v\n%s", err, out)
	}
	if out, err := exec.Command(filepath.Join(bin, "slapadd"), "-q", "-f", path, "-l", filepath.Join(deploy, "seed.ldif")).CombinedOutput(); err != nil {
		t.Fatalf("slapadd seed.ldif: %v\n%s", err, out)
	}
}

// Lookups are counted by how they were answered.
func TestLookupMetrics(t *testing.T) {
	f := newFixture(t)
	f.user("mia", "mia@example.test")
	d := newDir(t, f.config())
	resolve(t, d, "mia@example.test")
	resolve(t, d, "mia@example.test")
	reg := prometheus.NewRegistry()
	reg.MustRegister(d.Collectors()...)
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "mailcluster_directory_lookups_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if got["ldap"] != 1 || got["cache"] != 1 {
		t.Fatalf("lookups by source %v, want one from LDAP and one from the cache", got)
	}
}
