// Command mailcluster is the one binary of the mail cluster. The first
// argument names the role: backend (mailbox server) or admin (account
// management in LDAP). See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"mailcluster/admin"
	"mailcluster/backend"
	"mailcluster/frontend"
	"mailcluster/internal/config"
	"mailcluster/internal/devcluster"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// logConfig is shared by every long-running role.
type logConfig struct {
	Format string `name:"log-format" help:"log format: text or json"`
	Level  string `name:"log-level" help:"log level: debug, info, warn or error"`
}

func (c logConfig) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log-level: %q is not debug, info, warn or error", c.Level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.Format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log-format: %q is not text or json", c.Format)
}

type role struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var roles = map[string]role{
	"backend": {"run a backend mailbox server (gRPC; PostgreSQL and S3)", longRunning("backend", backend.DefaultConfig,
		func(ctx context.Context, c backend.Config, log *slog.Logger, _ io.Writer) error {
			return backend.Run(ctx, c, log)
		})},
	"frontend": {"run a frontend (SMTP, submission, IMAP, POP3; LDAP and backends)", longRunning("frontend", frontend.DefaultConfig,
		func(ctx context.Context, c frontend.Config, log *slog.Logger, _ io.Writer) error {
			return frontend.Run(ctx, c, log)
		})},
	"admin": {"manage accounts, aliases and lists in LDAP (mailcluster admin help)", admin.Main},
	"dev":   {"run a complete local cluster (PostgreSQL, slapd, backends, frontends) under one directory", longRunning("dev", devcluster.DefaultConfig, devcluster.Run)},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mailcluster ROLE [flags]   (mailcluster ROLE -h lists a role's settings)")
	for _, name := range []string{"backend", "frontend", "admin", "dev"} {
		fmt.Fprintf(w, "  %-10s %s\n", name, roles[name].summary)
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	r, ok := roles[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "mailcluster: unknown role %q\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return r.run(ctx, args[1:], stdout, stderr)
}

// loadConfig fills cfg from the environment and flags; it prints errors and
// usage and returns false when the role should not start.
func loadConfig(name string, cfg any, args []string, stderr io.Writer) (code int, ok bool) {
	fs := flag.NewFlagSet("mailcluster "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := config.Load(cfg, fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		fmt.Fprintf(stderr, "mailcluster %s: %v\n", name, err)
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mailcluster %s: unexpected arguments: %s\n", name, strings.Join(fs.Args(), " "))
		return 2, false
	}
	return 0, true
}

// longRunning makes the entry point of a long-running role: load its
// configuration (with the log settings) from the environment and flags,
// validate it, and run until ctx ends.
func longRunning[C any, P interface {
	*C
	Validate() error
}](name string, defaults func() C, run func(ctx context.Context, cfg C, log *slog.Logger, stdout io.Writer) error) func(context.Context, []string, io.Writer, io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		var cfg struct {
			Role C
			Log  logConfig
		}
		cfg.Role = defaults()
		cfg.Log = logConfig{Format: "text", Level: "info"}
		if code, ok := loadConfig(name, &cfg, args, stderr); !ok {
			return code
		}
		log, err := cfg.Log.logger(stderr)
		if err == nil {
			err = P(&cfg.Role).Validate()
		}
		if err != nil {
			fmt.Fprintf(stderr, "mailcluster %s: invalid configuration:\n  %s\n", name, strings.ReplaceAll(err.Error(), "\n", "\n  "))
			return 2
		}
		if err := run(ctx, cfg.Role, log.With("role", name), stdout); err != nil {
			log.Error(name+" stopped", "err", err)
			return 1
		}
		return 0
	}
}
