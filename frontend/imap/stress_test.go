package imap

import (
	"context"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Concurrent appends, deliveries, flag changes and expunges through two
// frontends and two backends: afterwards every session's numbering, as
// built from the EXISTS and EXPUNGE it was sent, matches the mailbox.
func TestConcurrentChangesKeepNumbering(t *testing.T) {
	st := newStack(t, 2)
	id := st.user("nora")
	for i := 0; i < 20; i++ {
		deliver(t, st.clients[i%2], id, testMessage(i))
	}
	_, addrA := st.frontend(nil, 0)
	_, addrB := st.frontend(nil, 1)
	var clients []*imapclient.Client
	for i := 0; i < 4; i++ {
		addr := addrA
		if i%2 == 1 {
			addr = addrB
		}
		c := login(t, addr, "nora")
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	// Two clients idle while the others work.
	var idles []*imapclient.IdleCommand
	for _, c := range clients[2:] {
		idle, err := c.Idle()
		if err != nil {
			t.Fatal(err)
		}
		idles = append(idles, idle)
	}
	var wg sync.WaitGroup
	for w, c := range clients[:2] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for i := 0; i < 25; i++ {
				n := c.Mailbox().NumMessages
				switch op := rng.Intn(4); {
				case op == 0 || n == 0:
					msg := testMessage(1000 + 100*w + i)
					cmd := c.Append("INBOX", int64(len(msg)), nil)
					cmd.Write(msg)
					cmd.Close()
					if _, err := cmd.Wait(); err != nil {
						t.Errorf("append: %v", err)
						return
					}
				case op == 1:
					seq := uint32(rng.Intn(int(n))) + 1
					if err := c.Store(imap.SeqSetNum(seq), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
						t.Errorf("store: %v", err)
						return
					}
				case op == 2:
					if _, err := c.Expunge().Collect(); err != nil {
						t.Errorf("expunge: %v", err)
						return
					}
				default:
					if _, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect(); err != nil {
						t.Errorf("fetch: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10; i++ {
			deliver(t, st.clients[i%2], id, testMessage(2000+i))
		}
	}()
	wg.Wait()
	for _, idle := range idles {
		idle.Close()
		if err := idle.Wait(); err != nil {
			t.Fatal(err)
		}
	}

	truth := backendUIDs(t, st.clients[0], id)
	deadline := time.Now().Add(5 * time.Second)
	for i, c := range clients {
		for {
			if err := c.Noop().Wait(); err != nil {
				t.Fatal(err)
			}
			if int(c.Mailbox().NumMessages) == len(truth) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n := c.Mailbox().NumMessages; int(n) != len(truth) {
			t.Fatalf("client %d counts %d messages, the mailbox has %d", i, n, len(truth))
		}
		msgs := fetchAll(t, c, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})
		if len(msgs) != len(truth) {
			t.Fatalf("client %d: FETCH 1:* gave %d, want %d", i, len(msgs), len(truth))
		}
		for j, m := range msgs {
			if m.SeqNum != uint32(j+1) || uint32(m.UID) != truth[j] {
				t.Fatalf("client %d: message %d is seq %d uid %d, want uid %d", i, j+1, m.SeqNum, m.UID, truth[j])
			}
		}
	}
}

func backendUIDs(t *testing.T, c mailboxv1.MailboxClient, account string) []uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sel, err := c.Select(ctx, &mailboxv1.SelectRequest{AccountId: account, Name: "INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	l := uidListOf(sel.Uids)
	var out []uint32
	l.each(func(_, u uint32) { out = append(out, u) })
	return out
}
