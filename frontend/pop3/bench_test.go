package pop3

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailcluster/internal/testenv"
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

// BenchmarkLogin measures POP3 logins on the real stack, one at a time:
// connect, USER, PASS (which opens the maildrop), QUIT, pipelined, for an
// INBOX of 0, 40 (mailload's maildrops) and 1000 messages. Besides the time
// per login it reports the CPU per login of this process (the client, the
// POP3 frontend and the backend) and of PostgreSQL (all its processes).
// Logins after the first are answered by the directory's login cache, so
// slapd takes no part.
//
//	go test -run '^$' -bench Login -benchtime 2000x -count 3 ./frontend/pop3/
func BenchmarkLogin(b *testing.B) {
	s := newStack(b, stackOptions{mod: func(c *Config) { c.InsecureAuth = true }})
	pg := testenv.StartPostgres(b).Proc.Cmd.Process.Pid
	for _, n := range []int{0, 40, 1000} {
		uid := fmt.Sprintf("bench%d", n)
		acct := s.user(uid)
		for i := 0; i < n; i++ {
			s.deliver(acct, msg(fmt.Sprintf("message %d", i), "x"))
		}
		script := []byte("USER " + uid + "\r\nPASS secret\r\nQUIT\r\n")
		want := fmt.Sprintf("+OK Logged in, %d messages", n)
		login := func() {
			c, err := net.Dial("tcp", s.plain)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(script); err != nil {
				b.Fatal(err)
			}
			r := bufio.NewReader(c)
			for i := 0; i < 4; i++ { // greeting, USER, PASS, QUIT
				line, err := r.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "+OK") || i == 2 && !strings.HasPrefix(line, want) {
					b.Fatalf("response %d: %q %v", i, line, err)
				}
			}
		}
		b.Run(fmt.Sprintf("messages=%d", n), func(b *testing.B) {
			login() // fills the login cache
			self, pgCPU := processCPU(b), postgresCPU(b, pg)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				login()
			}
			b.StopTimer()
			perLogin := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
			b.ReportMetric(perLogin(processCPU(b)-self), "proc-cpu-µs/login")
			b.ReportMetric(perLogin(postgresCPU(b, pg)-pgCPU), "pg-cpu-µs/login")
		})
	}
}

// processCPU is the CPU time this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// postgresCPU is the CPU time PostgreSQL has used: the postmaster's own and
// that of its children, running (from /proc) and exited.
func postgresCPU(tb testing.TB, postmaster int) time.Duration {
	stat := func(pid string) []string {
		b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
		if err != nil {
			return nil // gone
		}
		// Fields after the command, which is in parentheses: state is
		// field 3 of stat(5), so f[i] is field i+3.
		return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	}
	ticks := func(f []string, fields ...int) (n int64) {
		for _, i := range fields {
			v, _ := strconv.ParseInt(f[i-3], 10, 64)
			n += v
		}
		return n
	}
	pm := strconv.Itoa(postmaster)
	f := stat(pm)
	if f == nil {
		tb.Fatal("postgres is not running")
	}
	total := ticks(f, 14, 15, 16, 17) // utime, stime, cutime, cstime
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if f := stat(d.Name()); len(f) > 12 && f[1] == pm { // field 4: ppid
			total += ticks(f, 14, 15)
		}
	}
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(total) * time.Second / clockTicks
}
