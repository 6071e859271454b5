package admin

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"mailcluster/backend/dkim"
	"mailcluster/backend/store"
)

// openStore connects to the backends' database.
func (e *env) openStore() error {
	if e.g.PostgresDSN == "" {
		return usagef("postgres-dsn (MAILCLUSTER_POSTGRES_DSN) is required for this command")
	}
	st, err := store.Open(e.ctx, store.Config{DSN: e.g.PostgresDSN, MaxConns: 2})
	if err != nil {
		return fmt.Errorf("postgres-dsn: %w", err)
	}
	e.st = st
	return nil
}

// storeFlags parses a queue or dkim command's arguments and connects to
// PostgreSQL.
func (e *env) storeFlags(opts any, args []string, minArgs, maxArgs int) ([]string, error) {
	pos, err := e.parseFlags(opts, args, minArgs, maxArgs)
	if err != nil {
		return nil, err
	}
	return pos, e.openStore()
}

func queueID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("%q is not a queue id", s)
	}
	return id, nil
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func queueList(e *env, args []string) error {
	var o struct {
		Limit int `name:"limit" help:"most entries to list"`
	}
	o.Limit = 1000
	if _, err := e.storeFlags(&o, args, 0, 0); err != nil {
		return err
	}
	if o.Limit <= 0 {
		return usagef("--limit must be positive")
	}
	list, err := e.st.QueueList(e.ctx, o.Limit)
	if err != nil {
		return err
	}
	if list == nil {
		list = []store.QueueSummary{}
	}
	e.print(list, func(w io.Writer) {
		if len(list) == 0 {
			fmt.Fprintln(w, "The queue is empty.")
			return
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tQUEUED\tSIZE\tSENDER\tWAITING\tNEXT ATTEMPT\tLAST ERROR")
		for _, q := range list {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%s\t%s\n", q.ID, when(q.CreatedAt), q.Size, orText(clean(q.MailFrom), "<>"),
				q.Recipients, when(q.NextAttempt), orText(oneLine(q.LastError, 80), "-"))
		}
		tw.Flush()
	})
	return nil
}

// clean makes text from the queue (addresses, remote servers' replies)
// safe for a terminal: control characters, C1 included, become '?'.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}

func oneLine(s string, n int) string {
	s = clean(strings.Join(strings.Fields(s), " "))
	if len(s) > n {
		s = s[:n-3] + "..."
	}
	return s
}

func queueShow(e *env, args []string) error {
	pos, err := e.storeFlags(nil, args, 1, 1)
	if err != nil {
		return err
	}
	id, err := queueID(pos[0])
	if err != nil {
		return err
	}
	d, err := e.st.QueueShow(e.ctx, id)
	if err != nil {
		return err
	}
	e.print(d, func(w io.Writer) {
		fmt.Fprintf(w, "queue id:   %d\n", d.ID)
		fmt.Fprintf(w, "sender:     %s\n", orText(clean(d.MailFrom), "<> (a bounce: never bounced itself)"))
		fmt.Fprintf(w, "submitter:  %s\n", orText(d.Submitter, "(arrived from outside)"))
		fmt.Fprintf(w, "bounces to: %s\n", orText(d.Bounce, orText(clean(d.MailFrom), "nobody")))
		fmt.Fprintf(w, "size:       %d bytes\n", d.Size)
		fmt.Fprintf(w, "queued:     %s\n", when(d.CreatedAt))
		fmt.Fprintf(w, "expires:    %s (undelivered recipients bounce then)\n", when(d.ExpiresAt))
		fmt.Fprintf(w, "dkim:       %s\n", yesNo(d.Signed))
		fmt.Fprintf(w, "trace:      %s\n", orNone(d.TraceID))
		fmt.Fprintf(w, "waiting:    %d recipient(s)\n", len(d.Waiting))
		for _, r := range d.Waiting {
			state := "next attempt " + when(r.NextAttempt)
			if r.Leased {
				state = "being delivered now"
			}
			fmt.Fprintf(w, "  %s\n    attempts: %d, last: %s, %s\n", clean(r.Address), r.Attempts, whenPtr(r.LastAttempt), state)
			if r.LastError != "" {
				fmt.Fprintf(w, "    last error: %s\n", oneLine(r.LastError, 1000))
			}
		}
	})
	return nil
}

func whenPtr(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return when(*t)
}

func queueRetry(e *env, args []string) error {
	pos, err := e.storeFlags(nil, args, 1, 1)
	if err != nil {
		return err
	}
	var id int64
	if pos[0] != "all" {
		if id, err = queueID(pos[0]); err != nil {
			return err
		}
	}
	n, err := e.st.QueueRetry(e.ctx, id)
	if err != nil {
		return err
	}
	e.done("%d recipient(s) due now", n)
	return nil
}

func queueDelete(e *env, args []string) error {
	pos, err := e.storeFlags(nil, args, 1, 1)
	if err != nil {
		return err
	}
	id, err := queueID(pos[0])
	if err != nil {
		return err
	}
	if err := e.st.QueueDelete(e.ctx, id); err != nil {
		return err
	}
	e.done("queue entry %d deleted", id)
	return nil
}

func dkimGenerate(e *env, args []string) error {
	o := struct {
		Selector  string `name:"selector" help:"DNS selector of the key (default: mc plus the year and month)"`
		Algorithm string `name:"algorithm" help:"rsa (2048 bits, understood everywhere) or ed25519 (RFC 8463)"`
		Activate  bool   `name:"activate" help:"sign with the key at once (only when its record is already published)"`
	}{Algorithm: "rsa"}
	pos, err := e.parseFlags(&o, args, 1, 1)
	if err != nil {
		return err
	}
	if o.Selector == "" {
		o.Selector = "mc" + time.Now().UTC().Format("200601")
	}
	domain := strings.ToLower(strings.TrimSuffix(pos[0], "."))
	key, err := dkim.Generate(domain, o.Selector, o.Algorithm)
	if err != nil {
		return usagef("%v", err)
	}
	pem, err := key.PrivatePEM()
	if err != nil {
		return err
	}
	if err := e.openStore(); err != nil {
		return err
	}
	if err := e.st.AddDKIMKey(e.ctx, domain, key.Selector, pem, o.Activate); err != nil {
		return err
	}
	name, value := key.TXTRecord()
	e.print(map[string]any{"domain": domain, "selector": key.Selector, "algorithm": key.Algorithm, "active": o.Activate,
		"record_name": name, "record_value": value, "zone_line": key.ZoneLine()}, func(w io.Writer) {
		fmt.Fprintf(w, "Created a %s key for %s with selector %s. Publish this DNS record:\n\n", key.Algorithm, domain, key.Selector)
		fmt.Fprintln(w, key.ZoneLine())
		if o.Activate {
			fmt.Fprintf(w, "\nThe key is active: backends sign %s's mail with it within a minute.\n", domain)
		} else {
			fmt.Fprintf(w, "\nOnce it resolves, let the key sign (backends pick it up within a minute):\n\n  mailcluster admin dkim activate %s %s\n", domain, key.Selector)
		}
	})
	return nil
}

func dkimActivate(e *env, args []string) error {
	pos, err := e.storeFlags(nil, args, 2, 2)
	if err != nil {
		return err
	}
	if err := e.st.ActivateDKIMKey(e.ctx, pos[0], pos[1]); err != nil {
		return err
	}
	e.done("DKIM key %s of %s is active; backends sign with it within a minute", pos[1], pos[0])
	return nil
}

func dkimList(e *env, args []string) error {
	if _, err := e.storeFlags(nil, args, 0, 0); err != nil {
		return err
	}
	keys, err := e.st.DKIMKeys(e.ctx)
	if err != nil {
		return err
	}
	type row struct {
		store.DKIMKey
		Algorithm string `json:"algorithm"`
		Record    string `json:"record_name"`
	}
	rows := []row{}
	for _, k := range keys {
		r := row{DKIMKey: k}
		if key, err := dkim.Parse(k.Domain, k.Selector, k.PrivatePEM); err == nil {
			r.Algorithm = key.Algorithm
			r.Record, _ = key.TXTRecord()
		} else {
			r.Algorithm = "unusable: " + err.Error() // the backends sign nothing with it
		}
		rows = append(rows, r)
	}
	e.print(rows, func(w io.Writer) {
		if len(rows) == 0 {
			fmt.Fprintln(w, "No DKIM keys: outbound mail is not signed.")
			return
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DOMAIN\tSELECTOR\tALGORITHM\tCREATED\tACTIVE\tSIGNS")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Domain, r.Selector, r.Algorithm, when(r.CreatedAt), yesNo(r.Active), yesNo(r.Signing))
		}
		tw.Flush()
	})
	return nil
}

func dkimDelete(e *env, args []string) error {
	pos, err := e.storeFlags(nil, args, 2, 2)
	if err != nil {
		return err
	}
	if err := e.st.DeleteDKIMKey(e.ctx, pos[0], pos[1]); err != nil {
		return err
	}
	e.done("DKIM key %s of %s deleted", pos[1], pos[0])
	return nil
}
