package backend

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// benchMessage builds a realistic message of about size bytes: headers, a
// text part and, for larger sizes, a base64 attachment.
func benchMessage(i, size int) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Received: from client.example.test (client.example.test [127.0.0.1])\r\n\tby mx.example.test with ESMTPS id %d; Wed, 25 Nov 2026 10:00:00 +0000\r\n", i)
	fmt.Fprintf(&sb, "From: Sender %d <sender%d@example.test>\r\nTo: user@example.test\r\nSubject: benchmark message %d\r\n", i, i, i)
	fmt.Fprintf(&sb, "Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d.bench@example.test>\r\nMIME-Version: 1.0\r\n", i)
	sb.WriteString("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	line := "The quick brown fox jumps over the lazy dog while benchmarks run.\r\n"
	text := min(size/2, 2048)
	for sb.Len() < text {
		sb.WriteString(line)
	}
	sb.WriteString("\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	b64 := "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29kZT4+CnN0cmVhbQp4\r\n"
	for sb.Len() < size-20 {
		sb.WriteString(b64)
	}
	sb.WriteString("\r\n--b1--\r\n")
	return []byte(sb.String())
}

// BenchmarkDeliver measures deliveries through the gRPC API into real
// PostgreSQL and S3, with 1 and 16 concurrent streams.
func BenchmarkDeliver(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		for _, streams := range []int{1, 16} {
			b.Run(fmt.Sprintf("size=%dK/streams=%d", size>>10, streams), func(b *testing.B) {
				e := newBenchEnv(b)
				c := e.client(0)
				msgs := make([][]byte, 32)
				for i := range msgs {
					msgs[i] = benchMessage(i, size)
				}
				var next atomic.Int64
				var wg sync.WaitGroup
				b.SetBytes(int64(len(msgs[0])))
				b.ResetTimer()
				start := time.Now()
				for w := 0; w < streams; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						for {
							i := next.Add(1) - 1
							if i >= int64(b.N) {
								return
							}
							if _, err := deliverB(c, msgs[i%32], fmt.Sprintf("bench-%d", i%50)); err != nil {
								b.Error(err)
								return
							}
						}
					}(w)
				}
				wg.Wait()
				el := time.Since(start)
				b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkFetchMetadata measures streaming FLAGS, ENVELOPE, RFC822.SIZE and
// INTERNALDATE for every message of a 10,000 and a 100,000 message mailbox.
func BenchmarkFetchMetadata(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("messages=%d", n), func(b *testing.B) {
			e := newBenchEnv(b)
			c := e.client(0)
			if _, err := deliverB(c, benchMessage(1, 4<<10), "big"); err != nil {
				b.Fatal(err)
			}
			// Fill the mailbox with copies of the delivered row: the
			// metadata is what is measured, not the delivery.
			db := dbName(e.dsn)
			if _, err := e.pg.Exec(db, fmt.Sprintf(`
				INSERT INTO messages (account_id, mailbox_id, uid, modseq, flags, keywords, internal_date, sent_date, size,
					blob_key, header, envelope, structure, search_header, search_body)
				SELECT account_id, mailbox_id, g, modseq, flags, keywords, internal_date, sent_date, size,
					blob_key, header, envelope, structure, search_header, search_body
				FROM messages, generate_series(2, %d) g WHERE account_id = 'big';
				UPDATE mailboxes SET uid_next = %d, message_count = %d WHERE account_id = 'big' AND name = 'INBOX';
				ANALYZE messages;`, n, n+1, n)); err != nil {
				b.Fatal(err)
			}
			sel, err := c.Select(benchCtx(b), &mailboxv1.SelectRequest{AccountId: "big", Name: "INBOX"})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				st, err := c.Fetch(benchCtx(b), &mailboxv1.FetchRequest{AccountId: "big", MailboxId: sel.Status.MailboxId,
					Envelope: true, InternalDate: true})
				if err != nil {
					b.Fatal(err)
				}
				got := 0
				for {
					r, err := st.Recv()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					got += len(r.Messages)
				}
				if got != n {
					b.Fatalf("fetched %d of %d", got, n)
				}
			}
		})
	}
}

// BenchmarkQueueDelivery measures outbound delivery: b.N queued 4 KiB
// messages (one recipient each, one destination domain) sent by one
// backend's workers to an SMTP sink on loopback, through the real
// PostgreSQL and S3. The queue is filled first by a backend that does not
// deliver, so that only delivery is timed.
func BenchmarkQueueDelivery(b *testing.B) {
	for _, workers := range []int{16, 64} {
		b.Run(fmt.Sprintf("size=4K/workers=%d", workers), func(b *testing.B) {
			o := newOutEnv(b)
			sink := o.sink("127.0.0.2")
			o.dns.Add(b, "far.test. MX 10 mx.far.test.", "mx.far.test. A 127.0.0.2")
			fill := o.config()
			fill.QueueWorkers = 0
			o.start(fill)
			c := o.client(0)
			msg := benchMessage(0, 4<<10)
			var next atomic.Int64
			var wg sync.WaitGroup
			for w := 0; w < 16; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
						submit(b, c, submission{from: "alice@example.test", remote: []string{fmt.Sprintf("u%d@far.test", i)}, msg: msg})
					}
				}()
			}
			wg.Wait()
			cfg := o.config()
			cfg.QueueWorkers = workers
			cfg.OutboundDomainConcurrency = workers
			cfg.PostgresMaxConns = 32
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			start := time.Now()
			o.start(cfg)
			sink.WaitMessages(b, b.N, 10*time.Minute)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			b.ReportMetric(float64(sink.Connections()), "connections")
		})
	}
}
