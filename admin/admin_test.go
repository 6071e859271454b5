package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"mailcluster/admin"
	"mailcluster/directory"
	"mailcluster/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var ip = netip.MustParseAddr("192.0.2.10")

// site is one test's directory subtree and how to reach it.
type site struct {
	t    *testing.T
	s    *testenv.Slapd
	tree testenv.Tree
	url  string
}

func newSite(t *testing.T) *site {
	s := testenv.StartSlapd(t)
	return &site{t: t, s: s, tree: s.NewTree(t), url: s.URL}
}

// run runs `mailcluster admin` with the site's settings and args.
func (st *site) run(args ...string) (stdout, stderr string, code int) {
	st.t.Helper()
	full := append([]string{"--ldap-urls=" + st.url, "--ldap-base-dn=" + st.tree.BaseDN,
		"--ldap-bind-dn=" + testenv.SlapdAdminDN, "--ldap-bind-password=" + testenv.SlapdAdminPassword}, args...)
	var out, errb bytes.Buffer
	code = admin.Main(context.Background(), full, &out, &errb)
	return out.String(), errb.String(), code
}

// ok runs a command that must succeed and returns its stdout.
func (st *site) ok(args ...string) string {
	st.t.Helper()
	out, errs, code := st.run(args...)
	if code != 0 {
		st.t.Fatalf("admin %q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
}

// fail runs a command that must fail with exit status code and a message
// on stderr containing want.
func (st *site) fail(code int, want string, args ...string) {
	st.t.Helper()
	out, errs, got := st.run(args...)
	if got != code || !strings.Contains(errs, want) {
		st.t.Fatalf("admin %q: exit %d, stderr %q (stdout %q); want exit %d and %q", args, got, errs, out, code, want)
	}
}

// okJSON runs a command with --json and decodes its output into v.
func (st *site) okJSON(v any, args ...string) {
	st.t.Helper()
	out := st.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		st.t.Fatalf("admin %q: output is not JSON: %v\n%s", args, err, out)
	}
}

// dir returns a Directory (no caching to speak of) reading the site.
func (st *site) dir() *directory.Directory {
	cfg := directory.DefaultConfig()
	cfg.URLs = []string{st.url}
	cfg.BaseDN = st.tree.BaseDN
	cfg.BindDN, cfg.BindPassword = testenv.SlapdAdminDN, testenv.SlapdAdminPassword
	cfg.CacheTTL, cfg.NegativeCacheTTL = 1, 0 // every lookup asks LDAP
	cfg.AuthDelayBase = 0
	d, err := directory.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		st.t.Fatal(err)
	}
	st.t.Cleanup(func() { d.Close() })
	return d
}

func (st *site) resolve(addr string) directory.Result {
	st.t.Helper()
	r, err := st.dir().Resolve(context.Background(), addr)
	if err != nil {
		st.t.Fatalf("Resolve(%s): %v", addr, err)
	}
	return r
}

func (st *site) login(login, pw string) error {
	_, err := st.dir().Authenticate(context.Background(), login, pw, ip)
	return err
}

func TestUserCommands(t *testing.T) {
	st := newSite(t)
	out := st.ok("user", "add", "alice@Example.TEST", "--password", "pw-1", "--backend", "backend-1",
		"--quota-bytes", "1G", "--quota-messages=500", "--alias", "a.smith@example.test,al@example.test", "--name", "Alice Smith")
	if !strings.Contains(out, "created alice@example.test") {
		t.Fatalf("user add said %q", out)
	}
	if err := st.login("alice", "pw-1"); err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
	r := st.resolve("al@example.test")
	if r.Kind != directory.Account || r.Account.Backend != "backend-1" || r.Account.Name != "Alice Smith" ||
		r.Account.Quota != (directory.Quota{StorageBytes: 1 << 30, Messages: 500}) || !r.Account.Enabled {
		t.Fatalf("alice as the directory sees her: %+v", r)
	}

	// Flags before the command, --json after it.
	var acc directory.AccountInfo
	st.okJSON(&acc, "user", "show", "a.smith@example.test")
	if acc.Address != "alice@example.test" || acc.Login != "alice" || len(acc.Aliases) != 2 || acc.ID == "" {
		t.Fatalf("user show --json: %+v", acc)
	}
	if out := st.ok("user", "show", "alice"); !strings.Contains(out, "backend-1") || !strings.Contains(out, "uid=alice,"+st.tree.PeopleDN) {
		t.Fatalf("user show: %s", out)
	}

	// Clear errors for what is taken.
	st.fail(1, "address alice@example.test is already used by uid=alice,"+st.tree.PeopleDN, "user", "add", "ALICE@example.test", "--uid", "other")
	st.fail(1, "address al@example.test is already used by uid=alice", "user", "add", "bob@example.test", "--alias", "al@example.test")
	st.fail(1, "login alice is already used by uid=alice", "user", "add", "alice@other.test")
	st.fail(1, "invalid address", "user", "add", "not-an-address")

	// A password file, and no password at all.
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("pw-bob\n"), 0o600)
	st.ok("user", "add", "bob@example.test", "--password-file", pwFile, "--backend=backend-2")
	if err := st.login("bob@example.test", "pw-bob"); err != nil {
		t.Fatalf("bob: %v", err)
	}
	if out := st.ok("user", "add", "carol@example.test"); !strings.Contains(out, "no password set") {
		t.Fatalf("add without password: %s", out)
	}
	if err := st.login("carol", "anything"); !errors.Is(err, directory.ErrBadCredentials) {
		t.Fatalf("carol without a password: %v", err)
	}

	var users []directory.AccountInfo
	st.okJSON(&users, "user", "list")
	if len(users) != 3 || users[0].Address != "alice@example.test" || users[2].Address != "carol@example.test" {
		t.Fatalf("user list: %+v", users)
	}
	if out := st.ok("user", "list", "--domain", "other.test"); !strings.Contains(out, "0 accounts") {
		t.Fatalf("user list --domain other.test: %s", out)
	}

	// disable / enable
	st.ok("user", "disable", "alice@example.test")
	if err := st.login("alice", "pw-1"); !errors.Is(err, directory.ErrDisabled) {
		t.Fatalf("disabled alice: %v", err)
	}
	if st.resolve("alice@example.test").Account.Enabled {
		t.Fatal("disabled alice resolves as enabled")
	}
	st.ok("user", "enable", "alice")
	if err := st.login("alice", "pw-1"); err != nil {
		t.Fatalf("enabled alice: %v", err)
	}

	// passwd, with each method; the old password stops working.
	for i, method := range []string{"auto", "extop", "ssha", "argon2"} {
		pw := "new-pw-" + method
		var res map[string]string
		st.okJSON(&res, "user", "passwd", "alice", "--password", pw, "--method", method)
		if want := map[string]string{"auto": "extop"}[method]; want != "" && res["method"] != want {
			t.Errorf("passwd --method auto used %q, want %q (slapd offers Password Modify)", res["method"], want)
		}
		if err := st.login("alice", pw); err != nil {
			t.Fatalf("%d: login after passwd --method %s: %v", i, method, err)
		}
		if err := st.login("alice", "pw-1"); !errors.Is(err, directory.ErrBadCredentials) {
			t.Fatalf("old password after passwd --method %s: %v", method, err)
		}
	}
	st.fail(2, "give the new password", "user", "passwd", "alice")
	st.fail(1, "unknown password method", "user", "passwd", "alice", "--password", "x", "--method", "md5")

	// set-backend, set-quota
	st.ok("user", "set-backend", "alice", "backend-9")
	if b := st.resolve("alice@example.test").Account.Backend; b != "backend-9" {
		t.Fatalf("backend after set-backend: %q", b)
	}
	st.ok("user", "set-backend", "alice", "-")
	if b := st.resolve("alice@example.test").Account.Backend; b != "" {
		t.Fatalf("backend after set-backend -: %q", b)
	}
	st.ok("user", "set-quota", "alice", "--quota-bytes", "2M")
	if q := st.resolve("alice@example.test").Account.Quota; q != (directory.Quota{StorageBytes: 2 << 20}) {
		t.Fatalf("quota after set-quota: %+v", q)
	}

	// delete
	st.ok("user", "delete", "bob@example.test")
	if r := st.resolve("bob@example.test"); r.Kind != directory.Unknown {
		t.Fatalf("deleted bob: %v", r.Kind)
	}
	st.fail(1, "no entry has the address bob@example.test", "user", "show", "bob@example.test")
	st.fail(1, "not found", "user", "delete", "bob")
	st.fail(1, "not found", "user", "disable", "nobody@example.test")
}

func TestAliasCommands(t *testing.T) {
	st := newSite(t)
	st.ok("user", "add", "alice@example.test", "--password", "x")
	st.ok("user", "add", "bob@example.test", "--password", "x")
	st.ok("alias", "add", "alice", "Postmaster@EXAMPLE.test")
	if r := st.resolve("postmaster@example.test"); r.Kind != directory.Account || r.Account.Address != "alice@example.test" {
		t.Fatalf("alias: %+v", r)
	}
	st.fail(1, "address postmaster@example.test is already used by uid=alice", "alias", "add", "bob", "postmaster@example.test")
	st.fail(1, "address bob@example.test is already used by uid=bob", "alias", "add", "alice", "bob@example.test")
	st.fail(1, "is the primary address", "alias", "remove", "alice", "alice@example.test")
	st.fail(1, "has no alias", "alias", "remove", "bob", "postmaster@example.test")
	st.ok("alias", "remove", "alice@example.test", "postmaster@example.test")
	if r := st.resolve("postmaster@example.test"); r.Kind != directory.Unknown {
		t.Fatalf("removed alias still resolves: %v", r.Kind)
	}
	st.fail(2, "wrong number of arguments", "alias", "add", "alice")
}

func TestListCommands(t *testing.T) {
	st := newSite(t)
	for _, u := range []string{"a", "b", "c"} {
		st.ok("user", "add", u+"@example.test", "--password", "x")
	}
	var l directory.ListInfo
	st.okJSON(&l, "list", "create", "team@example.test", "a", "b@example.test")
	if l.DN != "cn=team,"+st.tree.ListsDN || len(l.Members) != 2 {
		t.Fatalf("list create: %+v", l)
	}
	st.ok("list", "create", "all@example.test", "team@example.test", "c", "--name", "everyone")
	r := st.resolve("all@example.test")
	if r.Kind != directory.List || len(r.Members) != 3 || r.DN != "cn=everyone,"+st.tree.ListsDN {
		t.Fatalf("nested list: %+v", r)
	}
	// A loop made with the admin command is reported, not followed.
	st.ok("list", "add-member", "team@example.test", "all@example.test")
	out := st.ok("list", "show", "team@example.test")
	if !strings.Contains(out, "members (3)") || !strings.Contains(out, "delivers to 3 mailboxes") || !strings.Contains(out, "warning: loop") {
		t.Fatalf("list show of a looped list:\n%s", out)
	}
	st.fail(1, "already a member", "list", "add-member", "team", "a")
	st.ok("list", "remove-member", "team@example.test", "all@example.test")
	st.fail(1, "is not a member", "list", "remove-member", "team@example.test", "c")
	st.fail(1, "address team@example.test is already used by cn=team", "list", "create", "team@example.test", "a")
	st.fail(1, "member nobody@example.test: not found", "list", "create", "x@example.test", "nobody@example.test")
	st.fail(1, "is an account", "list", "show", "a@example.test")
	st.fail(2, "wrong number of arguments", "list", "create", "empty@example.test")

	// Deleting a member removes it from its lists, but never empties one.
	st.ok("user", "delete", "a")
	if r := st.resolve("team@example.test"); len(r.Members) != 1 || r.Members[0].Address != "b@example.test" {
		t.Fatalf("team after deleting a: %+v", r)
	}
	st.fail(1, "only member", "list", "remove-member", "team", "b")
	st.fail(1, "only member of the list cn=team", "user", "delete", "b")

	var v struct {
		directory.ListInfo
		Expansion directory.Result `json:"expansion"`
	}
	st.okJSON(&v, "list", "show", "everyone")
	if len(v.Members) != 2 || len(v.Expansion.Members) != 2 {
		t.Fatalf("list show --json: %+v", v)
	}
	st.ok("list", "delete", "team@example.test")
	if r := st.resolve("all@example.test"); len(r.Members) != 1 || r.Members[0].Address != "c@example.test" {
		t.Fatalf("all after deleting team: %+v", r)
	}
	st.ok("list", "delete", "everyone")
	if r := st.resolve("all@example.test"); r.Kind != directory.Unknown {
		t.Fatalf("deleted list: %v", r.Kind)
	}
}

func TestBulkAdd(t *testing.T) {
	st := newSite(t)
	var res struct {
		Added  int `json:"added"`
		Failed []directory.BulkError
	}
	st.okJSON(&res, "user", "bulk-add", "--generate", "40", "--domain", "example.test", "--password", "secret",
		"--backends", "b1,b2", "--workers", "4")
	if res.Added != 40 || len(res.Failed) != 0 {
		t.Fatalf("bulk-add --generate: %+v", res)
	}
	if err := st.login("user37@example.test", "secret"); err != nil {
		t.Fatalf("user37: %v", err)
	}
	if b := st.resolve("user2@example.test").Account.Backend; b != "b2" {
		t.Fatalf("user2's backend %q, want round-robin b2", b)
	}
	csvFile := filepath.Join(t.TempDir(), "users.csv")
	os.WriteFile(csvFile, []byte("# address,password,backend,quota-bytes,quota-messages,name\n"+
		"x1@example.test,pw1,b9,1000,10,X One\n"+
		"user5@example.test,pw\n"+ // taken
		"x2@example.test, pw2\n"+
		"X2@example.test,pw3\n"), 0o600) // twice in the file
	out, errs, code := st.run("user", "bulk-add", "--file", csvFile, "--method", "ssha")
	if code != 1 || !strings.Contains(out, "2 accounts created, 2 failed") || !strings.Contains(out, "user5@example.test is already used") ||
		!strings.Contains(out, "address x2@example.test appears again (first at entry 3)") ||
		!strings.Contains(errs, "2 of 4 accounts could not be created") {
		t.Fatalf("bulk-add --file: exit %d\n%s\n%s", code, out, errs)
	}
	r := st.resolve("x1@example.test")
	if r.Account.Backend != "b9" || r.Account.Name != "X One" || r.Account.Quota != (directory.Quota{StorageBytes: 1000, Messages: 10}) {
		t.Fatalf("x1 from CSV: %+v", r.Account)
	}
	if err := st.login("x2", "pw2"); err != nil {
		t.Fatalf("x2 (ssha): %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	os.WriteFile(bad, []byte("only-one-field@example.test\n"), 0o600)
	st.fail(1, "bad.csv:1: want address,password", "user", "bulk-add", "--file", bad)
	st.fail(2, "give --file or --generate", "user", "bulk-add")
}

func TestExplain(t *testing.T) {
	st := newSite(t)
	st.ok("user", "add", "alice@example.test", "--password", "x", "--backend", "backend-1", "--alias", "ali@example.test")
	st.ok("user", "add", "off@example.test", "--password", "x", "--disabled")
	st.ok("list", "create", "team@example.test", "alice", "off")

	var x directory.Explanation
	st.okJSON(&x, "explain", "Ali+Tag@Example.test")
	if x.Address != "ali+tag@example.test" || x.Subaddress != "tag" || x.Result == nil || x.Result.Kind != directory.Account ||
		x.Entry == nil || x.Entry.Backend != "backend-1" || len(x.MemberOf) != 1 {
		t.Fatalf("explain alias+tag: %+v", x)
	}
	out := st.ok("explain", "alice@example.test")
	for _, want := range []string{"delivered to the mailbox of alice@example.test on backend backend-1", "member of:   cn=team",
		"logins bind as this entry (uid=alice"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain alice: no %q in\n%s", want, out)
		}
	}
	out = st.ok("explain", "team@example.test")
	if !strings.Contains(out, "distribution list") || !strings.Contains(out, "disabled member skipped") || !strings.Contains(out, "no account matches this login") {
		t.Errorf("explain team:\n%s", out)
	}
	if out := st.ok("explain", "off@example.test"); !strings.Contains(out, "refused: the account off@example.test is disabled") ||
		!strings.Contains(out, "the account is disabled") {
		t.Errorf("explain off:\n%s", out)
	}
	if out := st.ok("explain", "ghost@example.test"); !strings.Contains(out, "refused: no such address") {
		t.Errorf("explain ghost:\n%s", out)
	}
	if out := st.ok("explain", "x@elsewhere.example", "--local-domains", "example.test"); !strings.Contains(out, "not a local domain") {
		t.Errorf("explain remote:\n%s", out)
	}
	st.fail(1, "invalid address", "explain", "no-at-sign")
}

func TestUsageAndFailures(t *testing.T) {
	st := newSite(t)
	var out, errb bytes.Buffer
	if code := admin.Main(context.Background(), nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "user bulk-add") {
		t.Fatalf("no arguments: exit %d, %s", code, errb.String())
	}
	errb.Reset()
	if code := admin.Main(context.Background(), []string{"help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "--ldap-urls") {
		t.Fatalf("help: exit %d, %s", code, errb.String())
	}
	st.fail(2, "unknown command", "user", "frobnicate")
	st.fail(2, "unknown command", "frobnicate")
	st.fail(2, "flag provided but not defined", "user", "show", "alice", "--nope")
	errb.Reset()
	if code := admin.Main(context.Background(), []string{"--ldap-base-dn=", "user", "list"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "ldap-base-dn: must be set") {
		t.Fatalf("no base DN: exit %d, %s", code, errb.String())
	}
	// LDAP down: a clear temporary error, exit 1, and JSON on stdout.
	port, _ := testenv.FreePort()
	st.url = "ldap://127.0.0.1:" + strconv.Itoa(port) + "/"
	stdout, stderr, code := st.run("user", "show", "alice", "--json")
	if code != 1 || !strings.Contains(stderr, "temporarily unavailable") || !strings.Contains(stdout, `"error"`) {
		t.Fatalf("LDAP down: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestPasswdFallback: a server that does not list the Password Modify
// extension (hidden from the root DSE here) gets a salted hash with
// --method auto, and the password works.
func TestPasswdFallback(t *testing.T) {
	s := testenv.NewSlapd(t, testenv.SlapdOptions{Global: "access to dn.base=\"\" attrs=supportedExtension by * none\naccess to dn.base=\"\" by * read"})
	st := &site{t: t, s: s, tree: s.NewTree(t), url: s.URL}
	var acc directory.AccountInfo
	st.okJSON(&acc, "user", "add", "alice@example.test")
	var res map[string]string
	st.okJSON(&res, "user", "passwd", "alice", "--password", "pw-auto")
	if res["method"] != "ssha" {
		t.Fatalf("passwd --method auto without the extension used %q, want ssha", res["method"])
	}
	if err := st.login("alice", "pw-auto"); err != nil {
		t.Fatalf("login after the fallback: %v", err)
	}
	st.ok("user", "add", "bob@example.test", "--password", "pw-bob") // auto at creation: hash in the add
	if err := st.login("bob", "pw-bob"); err != nil {
		t.Fatalf("bob: %v", err)
	}
}
