package devcluster_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailcluster/internal/testenv"
)

// The local cluster, started the way the README says (mailcluster dev),
// takes mail by SMTP on one frontend, serves it by IMAP and POP3 on the
// other, and keeps serving the same user with nothing lost when the user's
// backend process is killed.
func TestLocalCluster(t *testing.T) {
	if _, err := testenv.PostgresBin(); err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.SlapdPath(); err != nil {
		t.Fatal(err)
	}
	root := testenv.RepoRoot()
	bin := filepath.Join(t.TempDir(), "mailcluster")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "cmd", "mailcluster")).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir, err := os.MkdirTemp("", "mcdev-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	base := freePortBlock(t)
	// The backends send outbound mail to an SMTP sink through a DNS server
	// on loopback (the settings reach them through the environment).
	dns := testenv.StartDNS(t)
	sink := testenv.StartSink(t, "127.0.0.2:0")
	dns.Add(t, "far.test. MX 10 mx.far.test.", "mx.far.test. A 127.0.0.2")
	_, sinkPort, _ := net.SplitHostPort(sink.Addr)
	cmd := exec.Command(bin, "dev", "-dir", dir, "-base-port", strconv.Itoa(base), "-repo", root)
	cmd.Env = append(os.Environ(), "MAILCLUSTER_OUTBOUND_DNS="+dns.Addr, "MAILCLUSTER_OUTBOUND_PORT="+sinkPort)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		if t.Failed() {
			for _, n := range []string{"frontend-1", "frontend-2", "backend-1", "backend-2"} {
				b, _ := os.ReadFile(filepath.Join(dir, "logs", n+".log"))
				t.Logf("%s log:\n%s", n, tail(string(b), 3000))
			}
			t.Logf("dev stderr:\n%s", tail(stderr.String(), 3000))
		}
	}()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Ctrl-C stops everything") {
				close(ready)
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-exited:
		exited <- err
		t.Fatalf("mailcluster dev exited: %v", err)
	case <-time.After(3 * time.Minute):
		t.Fatal("mailcluster dev did not start")
	}

	caPEM, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tlsConf := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	port := func(frontend, p int) string { return fmt.Sprintf("127.0.0.1:%d", base+100*frontend+p) }
	var trySend func(subject string) error

	// send delivers one message like an MTA would: a 4xx reply is retried.
	send := func(subject string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			err := trySend(subject)
			if err == nil {
				return
			}
			var te *textproto.Error
			if !errors.As(err, &te) || te.Code/100 != 4 || time.Now().After(deadline) {
				t.Fatalf("SMTP to frontend-1: %v", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	trySend = func(subject string) error {
		msg := "From: sender@remote.test\r\nTo: user1@example.test\r\nSubject: " + subject + "\r\n\r\nHello from the cluster test.\r\n"
		c, err := smtp.Dial(port(1, 25))
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.StartTLS(tlsConf); err != nil {
			return err
		}
		if err := c.Mail("sender@remote.test"); err != nil {
			return err
		}
		if err := c.Rcpt("user1@example.test"); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		w.Write([]byte(msg))
		if err := w.Close(); err != nil {
			return err
		}
		return c.Quit()
	}
	imapSubjects := func() []string {
		t.Helper()
		c, err := imapclient.DialStartTLS(port(2, 43), &imapclient.Options{TLSConfig: tlsConf})
		if err != nil {
			t.Fatalf("IMAP to frontend-2: %v", err)
		}
		defer c.Close()
		if err := c.Login("user1@example.test", "secret").Wait(); err != nil {
			t.Fatalf("IMAP login: %v", err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatalf("IMAP select: %v", err)
		}
		var all imap.SeqSet
		all.AddRange(1, 0)
		msgs, err := c.Fetch(all, &imap.FetchOptions{Envelope: true}).Collect()
		if err != nil {
			t.Fatalf("IMAP fetch: %v", err)
		}
		var out []string
		for _, m := range msgs {
			out = append(out, m.Envelope.Subject)
		}
		c.Logout().Wait()
		return out
	}
	pop3Count := func() int {
		t.Helper()
		conn, err := tls.Dial("tcp", port(2, 95), tlsConf)
		if err != nil {
			t.Fatalf("POP3S to frontend-2: %v", err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		line := func(cmd string) string {
			if cmd != "" {
				fmt.Fprintf(conn, "%s\r\n", cmd)
			}
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("POP3 %q: %v", cmd, err)
			}
			if !strings.HasPrefix(l, "+OK") {
				t.Fatalf("POP3 %q: %q", cmd, l)
			}
			return l
		}
		line("")
		line("USER user1@example.test")
		line("PASS secret")
		var n int
		fmt.Sscanf(line("STAT"), "+OK %d", &n)
		line("QUIT")
		return n
	}

	send("first")
	waitFor(t, func() bool { return contains(imapSubjects(), "first") })
	if n := pop3Count(); n < 1 {
		t.Fatalf("POP3 sees %d messages", n)
	}

	// user1's mailHost is backend-1: kill it.
	pid, err := os.ReadFile(filepath.Join(dir, "run", "backend-1.pid"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(pid)))
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	send("second")
	waitFor(t, func() bool {
		s := imapSubjects()
		return contains(s, "first") && contains(s, "second")
	})
	if n := pop3Count(); n < 2 {
		t.Fatalf("POP3 after the backend died sees %d messages", n)
	}

	// Submission to a remote address: queued by the surviving backend and
	// delivered to the remote domain's MX.
	submit := func() error {
		c, err := smtp.Dial(port(1, 87))
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.StartTLS(tlsConf); err != nil {
			return err
		}
		if err := c.Auth(smtp.PlainAuth("", "user1@example.test", "secret", "127.0.0.1")); err != nil {
			return err
		}
		if err := c.Mail("user1@example.test"); err != nil {
			return err
		}
		if err := c.Rcpt("friend@far.test"); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		w.Write([]byte("From: user1@example.test\r\nTo: friend@far.test\r\nSubject: outbound\r\n\r\nHello, world.\r\n"))
		if err := w.Close(); err != nil {
			return err
		}
		return c.Quit()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := submit()
		if err == nil {
			break
		}
		var te *textproto.Error
		if !errors.As(err, &te) || te.Code/100 != 4 || time.Now().After(deadline) {
			t.Fatalf("submission to frontend-1: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	got := sink.WaitMessages(t, 1, 60*time.Second)
	if got[0].From != "user1@example.test" || got[0].Recipients[0] != "friend@far.test" || !strings.Contains(string(got[0].Data), "Subject: outbound") {
		t.Fatalf("the remote MX got %+v", got[0])
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// freePortBlock finds a block of 1000 ports for the cluster below the
// kernel's ephemeral range. Inside that range, the outgoing connections and
// ":0" listeners of tests running in parallel can take a port between the
// probe and the cluster's bind (CI once failed that way).
func freePortBlock(t *testing.T) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const first = 12000
	blocks := (low - first) / 1000
	if blocks < 1 {
		t.Fatalf("ephemeral ports start at %d: no room below for the cluster", low)
	}
	start := os.Getpid() % blocks
	for i := 0; i < blocks; i++ {
		base := first + ((start+i)%blocks)*1000
		if portsFree(base) {
			return base
		}
	}
	t.Fatal("no free block of ports below the ephemeral range")
	return 0
}

// portsFree reports whether every port mailcluster dev uses at base is free
// (see the README's port table: slapd, backends, and each frontend's
// SMTP, submission, submissions, IMAP, IMAPS, POP3, POP3S and HTTP).
func portsFree(base int) bool {
	ports := []int{389, 901, 902, 951, 952}
	for fe := 1; fe <= 2; fe++ {
		for _, p := range []int{25, 87, 65, 43, 93, 10, 95, 80} {
			ports = append(ports, 100*fe+p)
		}
	}
	for _, p := range ports {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
