// Package admin implements `mailcluster admin`: managing accounts, aliases
// and distribution lists in the LDAP directory (through package directory's
// Manager), explaining what the cluster does with an address, and managing
// the outbound queue and DKIM keys in the backends' PostgreSQL database
// (through package store).
//
// Output is human-readable by default and JSON with --json. Every failure
// is reported on stderr (and as {"error": …} on stdout with --json) with a
// non-zero exit status: 1 when the operation failed, 2 for usage errors.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"mailcluster/backend/store"
	"mailcluster/directory"
	"mailcluster/internal/config"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// command is one subcommand: its usage line, a one-line summary and the
// function that runs it.
type command struct {
	args    string
	summary string
	run     func(e *env, args []string) error
}

// commands maps "noun verb" (or "verb") to the subcommand.
var commands = map[string]command{
	"user add":           {"ADDRESS [--password P | --password-file F] [--uid U] [--name N] [--backend B] [--quota-bytes N] [--quota-messages N] [--alias A[,B...]] [--disabled]", "create an account", userAdd},
	"user show":          {"ADDRESS|LOGIN", "show an account", userShow},
	"user list":          {"[--domain D]", "list accounts", userList},
	"user disable":       {"ADDRESS|LOGIN", "refuse logins and mail for an account", userDisable},
	"user enable":        {"ADDRESS|LOGIN", "enable a disabled account", userEnable},
	"user delete":        {"ADDRESS|LOGIN", "delete an account (and its list memberships)", userDelete},
	"user passwd":        {"ADDRESS|LOGIN [--password P | --password-file F] [--method auto|extop|ssha|argon2]", "set a password (RFC 3062 Password Modify, else a salted hash)", userPasswd},
	"user set-backend":   {"ADDRESS|LOGIN BACKEND|-", "set the account's backend (mailHost); - removes it", userSetBackend},
	"user set-quota":     {"ADDRESS|LOGIN [--quota-bytes N] [--quota-messages N]", "set the account's quota (0: backend default)", userSetQuota},
	"user bulk-add":      {"[--file F | --generate N --domain D --password P] [--workers N]", "create many accounts from a CSV file or generated user1..userN", userBulkAdd},
	"alias add":          {"ADDRESS|LOGIN ALIAS", "give an account or list a further address", aliasAdd},
	"alias remove":       {"ADDRESS|LOGIN ALIAS", "remove a further address", aliasRemove},
	"list create":        {"ADDRESS MEMBER... [--name CN]", "create a distribution list (members: addresses or logins)", listCreate},
	"list add-member":    {"LIST MEMBER", "add an account or list to a list", listAddMember},
	"list remove-member": {"LIST MEMBER", "remove a direct member from a list", listRemoveMember},
	"list show":          {"LIST", "show a list, its members and what it expands to", listShow},
	"list delete":        {"LIST", "delete a list (not its members)", listDelete},
	"explain":            {"ADDRESS", "what the cluster does with mail to, or a login as, ADDRESS", explain},
	"queue list":         {"[--limit N]", "list outbound mail waiting for delivery, oldest first", queueList},
	"queue show":         {"ID", "show a queued message: each waiting recipient, its last error and next attempt", queueShow},
	"queue retry":        {"ID|all", "attempt delivery of a queued message (or of all) now", queueRetry},
	"queue delete":       {"ID", "remove a queued message without delivering or bouncing it", queueDelete},
	"dkim generate":      {"DOMAIN [--selector S] [--algorithm rsa|ed25519] [--activate]", "create a DKIM key for DOMAIN and print the DNS record to publish", dkimGenerate},
	"dkim activate":      {"DOMAIN SELECTOR", "let a key sign, once its DNS record is published", dkimActivate},
	"dkim list":          {"", "list DKIM keys (the newest active key of each domain signs)", dkimList},
	"dkim delete":        {"DOMAIN SELECTOR", "delete a DKIM key", dkimDelete},
}

// globals are the settings every subcommand takes.
type globals struct {
	directory.ManagerConfig
	// PostgresDSN is for the queue and dkim commands, which work on the
	// backends' database (the same setting as the backend's).
	PostgresDSN string `name:"postgres-dsn" help:"PostgreSQL connection string of the backends (queue and dkim commands)"`
	JSON        bool   `name:"json" help:"print JSON instead of text"`
	Debug       bool   `name:"debug" help:"log LDAP failover and retries to stderr"`
}

// env is what a subcommand runs with.
type env struct {
	ctx    context.Context
	g      *globals
	m      *directory.Manager
	st     *store.Store // queue and dkim commands
	stdout io.Writer
	stderr io.Writer
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// Main runs `mailcluster admin` with args (the words after "admin") and
// returns the exit status. Settings come from MAILCLUSTER_* environment
// variables and flags (see usage); the bind DN must be allowed to write.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, stdout, stderr, os.Getenv)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	g := &globals{ManagerConfig: directory.DefaultManagerConfig()}
	fs := flag.NewFlagSet("mailcluster admin", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := config.Load(g, fs, nil, getenv); err != nil {
		fmt.Fprintf(stderr, "mailcluster admin: %v\n", err)
		return exitUsage
	}
	err := fs.Parse(args)
	rest := fs.Args()
	if errors.Is(err, flag.ErrHelp) || (err == nil && (len(rest) == 0 || rest[0] == "help")) {
		usage(stderr, fs)
		if err == nil && len(rest) > 0 {
			return exitOK
		}
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailcluster admin: %v\n", err)
		return exitUsage
	}
	name := rest[0]
	cmd, ok := commands[name]
	if len(rest) > 1 {
		if c2, ok2 := commands[rest[0]+" "+rest[1]]; ok2 {
			name, cmd, ok = rest[0]+" "+rest[1], c2, true
		}
	}
	if !ok {
		fmt.Fprintf(stderr, "mailcluster admin: unknown command %q (try: mailcluster admin help)\n", strings.Join(rest[:min(2, len(rest))], " "))
		return exitUsage
	}
	rest = rest[len(strings.Fields(name)):]
	e := &env{ctx: ctx, g: g, stdout: stdout, stderr: stderr}
	err = cmd.run(e, rest)
	if e.m != nil {
		e.m.Close()
	}
	if e.st != nil {
		e.st.Close()
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "mailcluster admin %s: %v\nusage: mailcluster admin %s %s\n", name, err, name, cmd.args)
		return exitUsage
	default:
		if g.JSON {
			e.json(map[string]string{"error": err.Error()})
		}
		fmt.Fprintf(stderr, "mailcluster admin %s: %v\n", name, err)
		return exitFail
	}
}

// start creates the Manager (it connects on first use).
func (e *env) start() error {
	level := slog.LevelError
	if e.g.Debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	m, err := directory.NewManager(e.g.ManagerConfig, log)
	if err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	e.m = m
	return nil
}

// parseInterleaved parses flags that may come before, between and after
// positional arguments (up to "--").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// subFlags parses a subcommand's arguments: its own flags (opts, a struct
// with name/help tags, filled by internal/config without environment
// variables) and the global settings, anywhere among the positional
// arguments, whose number it checks (maxArgs < 0: no maximum).
func (e *env) subFlags(opts any, args []string, minArgs, maxArgs int) ([]string, error) {
	pos, err := e.parseFlags(opts, args, minArgs, maxArgs)
	if err != nil {
		return nil, err
	}
	return pos, e.start()
}

// parseFlags is subFlags without connecting to LDAP.
func (e *env) parseFlags(opts any, args []string, minArgs, maxArgs int) ([]string, error) {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	noenv := func(string) string { return "" }
	if err := config.Load(e.g, fs, nil, noenv); err != nil {
		return nil, err
	}
	if opts != nil {
		if err := config.Load(opts, fs, nil, noenv); err != nil {
			return nil, err
		}
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	if len(pos) < minArgs || (maxArgs >= 0 && len(pos) > maxArgs) {
		return nil, usagef("wrong number of arguments")
	}
	return pos, nil
}

// json prints v as indented JSON.
func (e *env) json(v any) {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// print prints v as JSON with --json, else calls text.
func (e *env) print(v any, text func(w io.Writer)) {
	if e.g.JSON {
		e.json(v)
		return
	}
	text(e.stdout)
}

// done reports a change that has no other output.
func (e *env) done(msg string, a ...any) {
	s := fmt.Sprintf(msg, a...)
	e.print(map[string]string{"ok": s}, func(w io.Writer) { fmt.Fprintln(w, s) })
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: mailcluster admin [settings] COMMAND [arguments] [--json]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  %s %s\n      %s\n", n, c.args, c.summary)
	}
	fmt.Fprintln(w, "\nsettings (flags, or MAILCLUSTER_* environment variables):")
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(w, "  --%s (default %q)\n      %s\n", f.Name, f.DefValue, f.Usage)
	})
}
