package imap

import (
	"math/rand"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// BenchmarkIMAPMix runs mailload's IMAP mix (fetchall=1, body=20,
// store=10, search=5, noop=10) with 8 sessions on one mailbox of
// MAILCLUSTER_BENCH_MESSAGES messages (default 2,000) through the real
// stack. b.N is the number of operations.
func BenchmarkIMAPMix(b *testing.B) {
	benchMix(b, []benchOp{{"fetchall", 1}, {"body", 20}, {"store", 10}, {"search", 5}, {"noop", 10}})
}

// BenchmarkFetchAll is FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE) alone.
func BenchmarkFetchAll(b *testing.B) { benchMix(b, []benchOp{{"fetchall", 1}}) }

type benchOp struct {
	name   string
	weight int
}

func benchMix(b *testing.B, mix []benchOp) {
	n := 2000
	if s := os.Getenv("MAILCLUSTER_BENCH_MESSAGES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	st := newStack(b, 1)
	id := st.user("bench")
	deliverMany(b, st.clients[0], id, n)
	var wg sync.WaitGroup
	_, addr := st.frontend(nil, 0)
	const sessions = 8
	total := 0
	for _, o := range mix {
		total += o.weight
	}
	ops := make(chan struct{}, b.N)
	for i := 0; i < b.N; i++ {
		ops <- struct{}{}
	}
	close(ops)
	clients := make([]*imapclient.Client, sessions)
	for i := range clients {
		c := login(b, addr, "bench")
		clients[i] = c
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[s]
			rng := rand.New(rand.NewSource(int64(s)))
			for range ops {
				k := rng.Intn(total)
				name := ""
				for _, o := range mix {
					if k < o.weight {
						name = o.name
						break
					}
					k -= o.weight
				}
				seq := uint32(rng.Intn(n)) + 1
				var err error
				switch name {
				case "fetchall":
					_, err = c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, Envelope: true, RFC822Size: true}).Collect()
				case "body":
					_, err = c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
				case "store":
					op := imap.StoreFlagsAdd
					if rng.Intn(2) == 0 {
						op = imap.StoreFlagsDel
					}
					err = c.Store(imap.SeqSetNum(seq), &imap.StoreFlags{Op: op, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
				case "search":
					_, err = c.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
				default:
					err = c.Noop().Wait()
				}
				if err != nil {
					b.Errorf("%s: %v", name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
