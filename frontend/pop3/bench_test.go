package pop3

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// TestBenchServe serves POP3 on the real stack for ../shared/bench's
// mailload, when MAILCLUSTER_POP3_BENCH_LISTEN is set (e.g. 127.0.0.1:1110):
// users user11..user60@example.test (password "secret") with 40 messages of
// 16 KiB each, as baseline.sh fills them. It writes its PID (the root of the
// process tree that holds the frontend, the backend, PostgreSQL, the S3
// server and slapd) to $MAILCLUSTER_POP3_BENCH_READY and serves until that
// file is removed (at most 30 minutes).
func TestBenchServe(t *testing.T) {
	addr := os.Getenv("MAILCLUSTER_POP3_BENCH_LISTEN")
	ready := os.Getenv("MAILCLUSTER_POP3_BENCH_READY")
	if addr == "" || ready == "" {
		t.Skip("set MAILCLUSTER_POP3_BENCH_LISTEN and MAILCLUSTER_POP3_BENCH_READY")
	}
	s := newStack(t, stackOptions{listen: addr, mod: func(c *Config) { c.InsecureAuth = true }})
	rng := rand.New(rand.NewPCG(1, 2))
	bodies := make([][]byte, 32)
	for i := range bodies {
		bodies[i] = benchBody(rng, 16<<10-620)
	}
	for u := 11; u <= 60; u++ {
		acct := s.user(fmt.Sprintf("user%d", u))
		for i := 0; i < 40; i++ {
			hdr := fmt.Sprintf("Received: from mta1.remote.test (mta1.remote.test [192.0.2.%d])\r\n\tby mx.remote-sender.test (Postfix) with ESMTPS id %X\r\n\tfor <user%d@example.test>; %s\r\n"+
				"Date: %s\r\nFrom: Sender %d <sender%d@remote.test>\r\nTo: user%d@example.test\r\nSubject: Report %d for user%d\r\n"+
				"Message-ID: <%d.%d@remote.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_mix\"\r\n\r\n",
				1+i, i, u, time.Now().Format(time.RFC1123Z), time.Now().Format(time.RFC1123Z), i, i, u, i, u, u, i)
			s.deliver(acct, hdr+string(bodies[(u*40+i)%len(bodies)]))
		}
	}
	if err := os.WriteFile(ready, []byte(fmt.Sprint(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	if prof := os.Getenv("MAILCLUSTER_POP3_BENCH_PROFILE"); prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	t.Logf("serving POP3 on %s", addr)
	for end := time.Now().Add(30 * time.Minute); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if _, err := os.Stat(ready); err != nil {
			return
		}
	}
}

// benchBody is a multipart/mixed body like mailload's: text and HTML
// alternatives and a base64 attachment, CRLF, lines of at most 76 octets.
func benchBody(rng *rand.Rand, target int) []byte {
	var b bytes.Buffer
	words := []string{"lorem", "ipsum", "dolor", "sit", "amet", "report", "quarter", "budget", "meeting", "status"}
	text := func(n int) string {
		var t strings.Builder
		col := 0
		for t.Len() < n {
			w := words[rng.IntN(len(words))]
			if col+len(w) > 72 {
				t.WriteString("\r\n")
				col = 0
			}
			t.WriteString(w + " ")
			col += len(w) + 1
		}
		return t.String()
	}
	b.WriteString("This is a multi-part message in MIME format.\r\n\r\n--=_mix\r\nContent-Type: multipart/alternative; boundary=\"=_alt\"\r\n\r\n")
	fmt.Fprintf(&b, "--=_alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n\r\n", text(1200))
	fmt.Fprintf(&b, "--=_alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>%s</p></body></html>\r\n\r\n--=_alt--\r\n\r\n", text(1350))
	b.WriteString("--=_mix\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	raw := make([]byte, max(0, (target-b.Len()-100)*57/78))
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n\r\n--=_mix--\r\n")
	return b.Bytes()
}
