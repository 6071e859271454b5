package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"mailcluster/backend/store"
)

// backfillReport is how often `envelopes backfill` reports its progress.
const backfillReport = 2 * time.Second

// envelopesBackfill renders the IMAP ENVELOPE of the messages stored before
// backends rendered it at delivery (store.BackfillEnvelopes).
func envelopesBackfill(e *env, args []string) error {
	o := struct {
		Batch int           `name:"batch" help:"messages read and written per transaction"`
		Pause time.Duration `name:"pause" help:"wait this long after each batch, to leave a busy database more room"`
	}{Batch: store.DefaultBackfillBatch}
	if _, err := e.parseFlags(&o, args, 0, 0); err != nil {
		return err
	}
	if o.Batch < 1 || o.Batch > store.MaxBackfillBatch {
		return usagef("--batch must be between 1 and %d", store.MaxBackfillBatch)
	}
	if o.Pause < 0 {
		return usagef("--pause must not be negative")
	}
	if err := e.openStore(); err != nil {
		return err
	}
	var (
		p        store.BackfillProgress
		reported time.Time
	)
	n, err := e.st.BackfillEnvelopes(e.ctx, o.Batch, func(bp store.BackfillProgress) {
		p = bp
		if now := time.Now(); now.Sub(reported) >= backfillReport {
			reported = now
			fmt.Fprintf(e.stderr, "%d message(s) read, %d envelope(s) rendered so far\n", p.Scanned, p.Updated)
		}
		if o.Pause > 0 {
			t := time.NewTimer(o.Pause)
			defer t.Stop()
			select {
			case <-t.C:
			case <-e.ctx.Done():
			}
		}
	})
	if err != nil && (e.ctx.Err() != nil || errors.Is(err, context.Canceled)) {
		return fmt.Errorf("interrupted after rendering %d envelope(s) (%d message(s) read); what is done stays done, run it again to finish", n, p.Scanned)
	}
	if err != nil {
		return fmt.Errorf("stopped after rendering %d envelope(s) (%d message(s) read); run it again to finish: %w", n, p.Scanned, err)
	}
	e.print(p, func(w io.Writer) {
		fmt.Fprintf(w, "%d message(s) read, %d envelope(s) rendered\n", p.Scanned, p.Updated)
		if p.Unreadable > 0 {
			fmt.Fprintf(w, "%d stored envelope(s) could not be read and were left as they are\n", p.Unreadable)
		}
	})
	return nil
}
