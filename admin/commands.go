package admin

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"mailcluster/directory"
)

// passwordOpts are the ways to give a password (as a named field: the
// config loader walks exported fields only).
type passwordOpts struct {
	Password     string `name:"password" help:"the password (visible to other local users in the process list: prefer --password-file)"`
	PasswordFile string `name:"password-file" help:"read the password from the first line of this file (- for stdin)"`
}

// password returns the password given, "" if none.
func (p *passwordOpts) password() (string, error) {
	if p.PasswordFile == "" {
		return p.Password, nil
	}
	if p.Password != "" {
		return "", usagef("give --password or --password-file, not both")
	}
	var r io.Reader = os.Stdin
	if p.PasswordFile != "-" {
		f, err := os.Open(p.PasswordFile)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("%s: no password on the first line", p.PasswordFile)
	}
	return line, nil
}

// withPassword parses the flags of a command with one argument that takes
// a password, and returns the argument and the password ("" if none).
func (e *env) withPassword(opts any, p *passwordOpts, args []string) (string, string, error) {
	pos, err := e.subFlags(opts, args, 1, 1)
	if err != nil {
		return "", "", err
	}
	pw, err := p.password()
	return pos[0], pw, err
}

type userAddOpts struct {
	Pw            passwordOpts
	UID           string   `name:"uid" help:"login name and RDN (default: the address's local part)"`
	Name          string   `name:"name" help:"display name (default: the login)"`
	Backend       string   `name:"backend" help:"backend (mailHost) holding the mailbox"`
	QuotaBytes    int64    `name:"quota-bytes" help:"storage quota, e.g. 2G (0: backend default)"`
	QuotaMessages int64    `name:"quota-messages" help:"message count quota (0: backend default)"`
	Aliases       []string `name:"alias" help:"further addresses, comma-separated"`
	Disabled      bool     `name:"disabled" help:"create the account disabled"`
	Method        string   `name:"method" help:"how to set the password: auto, extop, ssha or argon2"`
}

func userAdd(e *env, args []string) error {
	o := &userAddOpts{Method: string(directory.PasswordAuto)}
	pos, pw, err := e.withPassword(o, &o.Pw, args)
	if err != nil {
		return err
	}
	u := directory.NewUser{Address: pos, UID: o.UID, Name: o.Name, Password: pw, Backend: o.Backend,
		Aliases: o.Aliases, Quota: directory.Quota{StorageBytes: o.QuotaBytes, Messages: o.QuotaMessages}, Disabled: o.Disabled}
	acc, err := e.m.AddUser(e.ctx, u, directory.PasswordMethod(o.Method))
	if err != nil {
		return err
	}
	e.print(acc, func(w io.Writer) {
		fmt.Fprintf(w, "created %s (%s)\n", acc.Address, acc.DN)
		if pw == "" {
			fmt.Fprintln(w, "no password set: set one with `mailcluster admin user passwd` before the user can log in")
		}
	})
	return nil
}

func printAccount(w io.Writer, a directory.AccountInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "address:\t%s\n", a.Address)
	fmt.Fprintf(tw, "login:\t%s\n", a.Login)
	fmt.Fprintf(tw, "name:\t%s\n", a.Name)
	fmt.Fprintf(tw, "dn:\t%s\n", a.DN)
	fmt.Fprintf(tw, "id:\t%s\n", a.ID)
	fmt.Fprintf(tw, "aliases:\t%s\n", orNone(strings.Join(a.Aliases, ", ")))
	fmt.Fprintf(tw, "backend:\t%s\n", orText(a.Backend, "(any: chosen by the frontend)"))
	fmt.Fprintf(tw, "quota:\t%s\n", quotaText(a.Quota))
	fmt.Fprintf(tw, "enabled:\t%s\n", yesNo(a.Enabled))
	if len(a.Forward) > 0 {
		fmt.Fprintf(tw, "forwards to:\t%s\n", strings.Join(a.Forward, ", "))
	}
	tw.Flush()
}

func quotaText(q directory.Quota) string {
	b, m := "backend default", "backend default"
	if q.StorageBytes > 0 {
		b = fmt.Sprintf("%d bytes", q.StorageBytes)
	}
	if q.Messages > 0 {
		m = fmt.Sprintf("%d messages", q.Messages)
	}
	return "storage " + b + ", count " + m
}

func orNone(s string) string { return orText(s, "(none)") }

func orText(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

type userListOpts struct {
	Domain string `name:"domain" help:"only accounts whose primary address is in this domain"`
}

func userList(e *env, args []string) error {
	o := &userListOpts{}
	if _, err := e.subFlags(o, args, 0, 0); err != nil {
		return err
	}
	users, err := e.m.Users(e.ctx, o.Domain)
	if err != nil {
		return err
	}
	if users == nil {
		users = []directory.AccountInfo{}
	}
	e.print(users, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tLOGIN\tBACKEND\tENABLED")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Address, u.Login, orText(u.Backend, "-"), yesNo(u.Enabled))
		}
		tw.Flush()
		fmt.Fprintf(w, "%d accounts\n", len(users))
	})
	return nil
}

// oneArg makes a command that applies op to its single argument and then
// reports done (a format with the argument as %[1]s).
func oneArg(op func(e *env, who string) error, done string) func(e *env, args []string) error {
	return func(e *env, args []string) error {
		pos, err := e.subFlags(nil, args, 1, 1)
		if err != nil {
			return err
		}
		if err := op(e, pos[0]); err != nil {
			return err
		}
		e.done(done, pos[0])
		return nil
	}
}

// twoArgs is oneArg for two arguments (%[1]s and %[2]s in done).
func twoArgs(op func(e *env, a, b string) error, done string) func(e *env, args []string) error {
	return func(e *env, args []string) error {
		pos, err := e.subFlags(nil, args, 2, 2)
		if err != nil {
			return err
		}
		if err := op(e, pos[0], pos[1]); err != nil {
			return err
		}
		e.done(done, pos[0], pos[1])
		return nil
	}
}

// show makes a command that looks its single argument up with get and
// prints the answer (JSON, or text).
func show[T any](get func(e *env, arg string) (T, error), text func(w io.Writer, v T)) func(e *env, args []string) error {
	return func(e *env, args []string) error {
		pos, err := e.subFlags(nil, args, 1, 1)
		if err != nil {
			return err
		}
		v, err := get(e, pos[0])
		if err != nil {
			return err
		}
		e.print(v, func(w io.Writer) { text(w, v) })
		return nil
	}
}

var (
	userShow    = show(func(e *env, who string) (directory.AccountInfo, error) { return e.m.User(e.ctx, who) }, printAccount)
	explain     = show(func(e *env, addr string) (directory.Explanation, error) { return e.m.Explain(e.ctx, addr) }, printExplanation)
	userDisable = oneArg(func(e *env, who string) error { return e.m.SetEnabled(e.ctx, who, false) }, "disabled %s")
	userEnable  = oneArg(func(e *env, who string) error { return e.m.SetEnabled(e.ctx, who, true) }, "enabled %s")
	userDelete  = oneArg(func(e *env, who string) error { return e.m.DeleteUser(e.ctx, who) }, "deleted %s")
	listDelete  = oneArg(func(e *env, l string) error { return e.m.DeleteList(e.ctx, l) }, "deleted list %s")
	aliasAdd    = twoArgs(func(e *env, who, a string) error { return e.m.AddAlias(e.ctx, who, a) },
		"%s now also receives mail for %s")
	aliasRemove = twoArgs(func(e *env, who, a string) error { return e.m.RemoveAlias(e.ctx, who, a) },
		"removed alias %[2]s from %[1]s")
	listAddMember = twoArgs(func(e *env, l, m string) error { return e.m.AddMember(e.ctx, l, m) },
		"added %[2]s to %[1]s")
	listRemoveMember = twoArgs(func(e *env, l, m string) error { return e.m.RemoveMember(e.ctx, l, m) },
		"removed %[2]s from %[1]s")
)

type passwdOpts struct {
	Pw     passwordOpts
	Method string `name:"method" help:"auto (Password Modify if the server offers it, else ssha), extop, ssha or argon2"`
}

func userPasswd(e *env, args []string) error {
	o := &passwdOpts{Method: string(directory.PasswordAuto)}
	pos, pw, err := e.withPassword(o, &o.Pw, args)
	if err != nil {
		return err
	}
	if pw == "" {
		return usagef("give the new password with --password or --password-file")
	}
	used, err := e.m.SetPassword(e.ctx, pos, pw, directory.PasswordMethod(o.Method))
	if err != nil {
		return err
	}
	how := map[directory.PasswordMethod]string{directory.PasswordExtOp: "with the Password Modify operation (the server hashed it)",
		directory.PasswordSSHA: "as a {SSHA} hash", directory.PasswordArgon2: "as an {ARGON2} hash"}[used]
	e.print(map[string]string{"ok": "password set", "method": string(used)}, func(w io.Writer) {
		fmt.Fprintf(w, "password of %s set %s\n", pos, how)
	})
	return nil
}

func userSetBackend(e *env, args []string) error {
	pos, err := e.subFlags(nil, args, 2, 2)
	if err != nil {
		return err
	}
	backend := pos[1]
	if backend == "-" {
		backend = ""
	}
	if err := e.m.SetBackend(e.ctx, pos[0], backend); err != nil {
		return err
	}
	e.done("backend of %s set to %s", pos[0], orText(backend, "(any)"))
	return nil
}

type quotaOpts struct {
	QuotaBytes    int64 `name:"quota-bytes" help:"storage quota, e.g. 2G (0: backend default)"`
	QuotaMessages int64 `name:"quota-messages" help:"message count quota (0: backend default)"`
}

func userSetQuota(e *env, args []string) error {
	o := &quotaOpts{}
	pos, err := e.subFlags(o, args, 1, 1)
	if err != nil {
		return err
	}
	q := directory.Quota{StorageBytes: o.QuotaBytes, Messages: o.QuotaMessages}
	if err := e.m.SetQuota(e.ctx, pos[0], q); err != nil {
		return err
	}
	e.done("quota of %s set: %s", pos[0], quotaText(q))
	return nil
}

type bulkOpts struct {
	File     string   `name:"file" help:"CSV file (- for stdin): address,password[,backend[,quota-bytes[,quota-messages[,name]]]]; # starts a comment"`
	Generate int      `name:"generate" help:"instead of a file, create this many accounts PREFIX<n>@DOMAIN"`
	Start    int      `name:"start" help:"first number for --generate"`
	Prefix   string   `name:"prefix" help:"local part prefix for --generate"`
	Domain   string   `name:"domain" help:"domain for --generate"`
	Backends []string `name:"backends" help:"backends assigned round-robin by --generate (comma-separated)"`
	Pw       passwordOpts
	Workers  int    `name:"workers" help:"accounts created concurrently"`
	Method   string `name:"method" help:"how to set passwords: auto, extop, ssha or argon2"`
}

func userBulkAdd(e *env, args []string) error {
	o := &bulkOpts{Start: 1, Prefix: "user", Workers: 8, Method: string(directory.PasswordAuto)}
	if _, err := e.subFlags(o, args, 0, 0); err != nil {
		return err
	}
	var users []directory.NewUser
	switch {
	case o.File != "" && o.Generate > 0:
		return usagef("give --file or --generate, not both")
	case o.Generate > 0:
		pw, err := o.Pw.password()
		if err != nil {
			return err
		}
		if o.Domain == "" {
			return usagef("--generate needs --domain")
		}
		for i := 0; i < o.Generate; i++ {
			u := directory.NewUser{Address: fmt.Sprintf("%s%d@%s", o.Prefix, o.Start+i, o.Domain), Password: pw}
			if len(o.Backends) > 0 {
				u.Backend = o.Backends[i%len(o.Backends)]
			}
			users = append(users, u)
		}
	case o.File != "":
		var err error
		if users, err = readBulkCSV(o.File); err != nil {
			return err
		}
	default:
		return usagef("give --file or --generate")
	}
	added, failed := e.m.BulkAdd(e.ctx, users, directory.BulkOptions{Workers: o.Workers, Method: directory.PasswordMethod(o.Method)}, nil)
	if failed == nil {
		failed = []directory.BulkError{}
	}
	e.print(map[string]any{"added": added, "failed": failed}, func(w io.Writer) {
		for _, f := range failed {
			fmt.Fprintf(w, "failed: %s: %s\n", f.Address, f.Err)
		}
		fmt.Fprintf(w, "%d accounts created, %d failed\n", added, len(failed))
	})
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d accounts could not be created", len(failed), len(users))
	}
	return nil
}

// readBulkCSV reads address,password[,backend[,quota-bytes[,quota-messages[,name]]]] lines.
func readBulkCSV(path string) ([]directory.NewUser, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var users []directory.NewUser
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return users, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < 2 || len(rec) > 6 {
			return nil, fmt.Errorf("%s:%d: want address,password[,backend[,quota-bytes[,quota-messages[,name]]]]", path, line)
		}
		u := directory.NewUser{Address: rec[0], Password: rec[1]}
		field := func(i int) string {
			if i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		u.Backend, u.Name = field(2), field(5)
		for i, dst := range []*int64{&u.Quota.StorageBytes, &u.Quota.Messages} {
			if s := field(3 + i); s != "" {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("%s:%d: quota %q is not a number", path, line, s)
				}
				*dst = n
			}
		}
		users = append(users, u)
	}
}

type listCreateOpts struct {
	Name string `name:"name" help:"the list's cn (default: the address's local part)"`
}

func listCreate(e *env, args []string) error {
	o := &listCreateOpts{}
	pos, err := e.subFlags(o, args, 2, -1)
	if err != nil {
		return err
	}
	l, err := e.m.CreateList(e.ctx, pos[0], o.Name, pos[1:])
	if err != nil {
		return err
	}
	e.print(l, func(w io.Writer) {
		fmt.Fprintf(w, "created list %s (%s) with %d members\n", l.Address, l.DN, len(l.Members))
	})
	return nil
}

// listView is `list show`: the list, its direct members and its expansion.
type listView struct {
	directory.ListInfo
	Expansion *directory.Result `json:"expansion,omitempty"`
	Error     string            `json:"expansion_error,omitempty"`
}

func listShow(e *env, args []string) error {
	pos, err := e.subFlags(nil, args, 1, 1)
	if err != nil {
		return err
	}
	l, err := e.m.List(e.ctx, pos[0])
	if err != nil {
		return err
	}
	v := listView{ListInfo: l}
	if x, err := e.m.Explain(e.ctx, l.Address); err != nil {
		return err
	} else if x.Result != nil {
		v.Expansion = x.Result
	} else {
		v.Error = x.Error
	}
	e.print(v, func(w io.Writer) {
		fmt.Fprintf(w, "list %s (%s)\n", l.Address, l.DN)
		if len(l.Aliases) > 0 {
			fmt.Fprintf(w, "aliases: %s\n", strings.Join(l.Aliases, ", "))
		}
		fmt.Fprintf(w, "members (%d):\n", len(l.Members))
		for _, m := range l.Members {
			fmt.Fprintf(w, "  %-8s %s  %s\n", m.Kind, orText(m.Address, "(missing entry)"), m.DN)
		}
		printExpansion(w, v.Expansion, v.Error)
	})
	return nil
}

func printExpansion(w io.Writer, r *directory.Result, errText string) {
	if r == nil {
		fmt.Fprintf(w, "expansion fails: %s\n", errText)
		return
	}
	fmt.Fprintf(w, "delivers to %d mailboxes", len(r.Members))
	if len(r.Forwards) > 0 {
		fmt.Fprintf(w, " and forwards to %s", strings.Join(r.Forwards, ", "))
	}
	fmt.Fprintln(w, ":")
	for _, m := range r.Members {
		fmt.Fprintf(w, "  %s  (backend %s)\n", m.Address, orText(m.Backend, "any"))
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
}

func printExplanation(w io.Writer, x directory.Explanation) {
	fmt.Fprintf(w, "address:     %s", x.Address)
	if x.Address != x.Input {
		fmt.Fprintf(w, " (normalised from %s)", x.Input)
	}
	fmt.Fprintln(w)
	if !x.LocalDomain {
		fmt.Fprintln(w, "mail:        not a local domain: relayed for authenticated senders, refused from others")
	} else if x.Result == nil {
		fmt.Fprintf(w, "mail:        refused: %s\n", x.Error)
	} else {
		r := x.Result
		if x.Subaddress != "" {
			fmt.Fprintf(w, "subaddress:  %q removed; matched %s\n", x.Subaddress, r.Address)
		}
		switch r.Kind {
		case directory.Unknown:
			fmt.Fprintln(w, "mail:        refused: no such address (550)")
		case directory.Account:
			if r.Account.Enabled {
				fmt.Fprintf(w, "mail:        delivered to the mailbox of %s on backend %s\n", r.Account.Address, orText(r.Account.Backend, "(any)"))
			} else {
				fmt.Fprintf(w, "mail:        refused: the account %s is disabled\n", r.Account.Address)
			}
		case directory.Forward:
			fmt.Fprintf(w, "mail:        forwarded to %s\n", strings.Join(r.Forwards, ", "))
		case directory.List:
			fmt.Fprintf(w, "mail:        distribution list %s: ", r.DN)
			printExpansion(w, r, "")
		}
		if x.Entry != nil {
			fmt.Fprintln(w, "entry:")
			printAccount(w, *x.Entry)
		}
		if len(x.MemberOf) > 0 {
			fmt.Fprintf(w, "member of:   %s\n", strings.Join(x.MemberOf, "; "))
		}
	}
	fmt.Fprintf(w, "login:       %s", x.Login.Note)
	if len(x.Login.Entries) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(x.Login.Entries, "; "))
	}
	fmt.Fprintln(w)
}
