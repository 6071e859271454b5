package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// VersityGWVersion is the S3 server version scripts/tools.sh installs.
const VersityGWVersion = "v1.8.0"

// S3 is a private S3 server (Versity S3 Gateway, posix backend) on loopback.
type S3 struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Region    string
	DataDir   string
	Proc      *Process
	logPath   string
}

var (
	s3Once   sync.Once
	s3Srv    *S3
	s3Err    error
	bucketSq atomic.Int64
)

// VersityGWPath returns the path of the versitygw binary.
func VersityGWPath() (string, error) {
	p := filepath.Join(ToolsDir(), "versitygw-"+VersityGWVersion, "versitygw")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", errMissingTool("versitygw " + VersityGWVersion)
}

// StartS3 starts the test binary's S3 server once and returns it.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	s3Once.Do(func() { s3Srv, s3Err = startS3() })
	if s3Err != nil {
		t.Fatalf("testenv: s3: %v", s3Err)
	}
	return s3Srv
}

func startS3() (*S3, error) {
	bin, err := VersityGWPath()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "mctest-s3-")
	if err != nil {
		return nil, err
	}
	atExit(func() { os.RemoveAll(base) })
	s := &S3{AccessKey: "mctest", SecretKey: "mctest-secret-key", Region: "us-east-1",
		DataDir: filepath.Join(base, "data"), logPath: filepath.Join(base, "versitygw.log")}
	if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		s.Endpoint = "127.0.0.1:" + strconv.Itoa(port)
		logf, err := os.Create(s.logPath)
		if err != nil {
			return nil, err
		}
		// Not --keep-alive: with it, v1.8.0 sometimes fails to parse a request
		// on a reused connection ("An error occurred when parsing the HTTP
		// request"), seen after an overwrite. Each S3 call pays a new TCP
		// connection instead.
		cmd := exec.Command(bin, "--port", s.Endpoint, "--quiet", "posix", s.DataDir)
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
		cmd.Stdout, cmd.Stderr = logf, logf
		s.Proc, err = startProcess(cmd, syscall.SIGTERM)
		if err != nil {
			return nil, err
		}
		lastErr = waitTCP(s.Endpoint, s.Proc, 20*time.Second, func() string { return readTail(s.logPath) })
		if lastErr == nil {
			return s, nil
		}
		s.Proc.Stop(syscall.SIGKILL, time.Second)
	}
	return nil, fmt.Errorf("versitygw: %w", lastErr)
}

// BucketName returns a fresh bucket name for one test. The caller creates
// the bucket (the blob store does, when told to).
func (s *S3) BucketName() string {
	return fmt.Sprintf("mctest-%d-%d", os.Getpid(), bucketSq.Add(1))
}
