// Command benchimap serves IMAP (package frontend/imap) next to a frontend,
// with the frontend's directory and backend settings, so that the SMTP
// benchmark (scripts/bench-smtp.sh, ../shared/bench) can verify delivery and
// empty mailboxes over IMAP until the frontend role serves IMAP itself.
// It is a benchmark aid, not a deployment artefact.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"mailcluster/directory"
	"mailcluster/frontend/imap"
	"mailcluster/frontend/pool"
	"mailcluster/internal/config"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

type settings struct {
	Listen        string   `name:"imap-listen" help:"address to serve IMAP on"`
	Backends      []string `name:"backends" help:"backend servers as name=host:port pairs"`
	BackendToken  string   `name:"backend-token" help:"shared secret for backends"`
	BackendCAFile string   `name:"backend-ca-file" help:"CA file (PEM) that signs backend certificates"`
	BackendCert   string   `name:"backend-cert" help:"client certificate file (PEM) for mTLS to backends"`
	BackendKey    string   `name:"backend-key" help:"private key file (PEM) for backend-cert"`
	IMAP          imap.Config
	Directory     directory.Config
}

// router adapts the pool to imap.Router.
type router struct{ p *pool.Pool }

func (r router) Route(accountID, mailHost string) (mailboxv1.MailboxClient, error) {
	b, err := r.p.Route(accountID, mailHost)
	if err != nil {
		return nil, err
	}
	return b.Client, nil
}

func main() {
	s := settings{Listen: "127.0.0.1:1143", IMAP: imap.DefaultConfig(), Directory: directory.DefaultConfig()}
	s.IMAP.InsecureAuth = true
	fs := flag.NewFlagSet("benchimap", flag.ExitOnError)
	if err := config.Load(&s, fs, os.Args[1:], nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, s, log); err != nil {
		fmt.Fprintln(os.Stderr, "benchimap:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, s settings, log *slog.Logger) error {
	dir, err := directory.New(s.Directory, log)
	if err != nil {
		return err
	}
	defer dir.Close()
	backends, err := pool.ParseBackends(s.Backends)
	if err != nil {
		return err
	}
	p, err := pool.New(ctx, pool.Config{Backends: backends, Token: s.BackendToken, CAFile: s.BackendCAFile,
		CertFile: s.BackendCert, KeyFile: s.BackendKey}, log)
	if err != nil {
		return err
	}
	defer p.Close()
	srv, err := imap.New(s.IMAP, imap.Deps{Auth: dir, Router: router{p}}, log)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return err
	}
	go srv.Serve(l)
	<-ctx.Done()
	l.Close()
	return nil
}
