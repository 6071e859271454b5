package blob

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// S3 defaults and limits.
const (
	DefaultS3PartSize    = 16 << 20 // 16 MiB
	DefaultS3Timeout     = 30 * time.Second
	DefaultS3MaxAttempts = 3
	minS3PartSize        = 5 << 20 // S3's minimum part size
	maxS3PartSize        = 5 << 30 // S3's maximum part size
)

// S3Config configures an S3 Store. PartSize also sets the memory one Put
// uses: a body up to PartSize is held whole (so it can be retried), a
// larger one a part at a time (about 3 × PartSize at most when its size
// was not given, 1 × otherwise).
type S3Config struct {
	Endpoint             string // host:port
	Bucket               string
	AccessKey, SecretKey string
	Region               string        // empty: ask the server (one extra request per bucket)
	UseTLS               bool          // https; else plain http (loopback or a private network only)
	CAFile               string        // extra CA for the endpoint's certificate; empty: system roots
	CreateBucket         bool          // create the bucket at start if missing (dev, tests, compose init)
	PartSize             uint64        // multipart part size; 0: a sensible default (e.g. 16 MiB)
	Timeout              time.Duration // per-operation timeout; 0: 30s
	// MaxAttempts is how often one request is tried on a transient failure
	// (connection refused, 5xx, throttling) before the operation fails;
	// 0: DefaultS3MaxAttempts. A Put whose body cannot be replayed is
	// tried once.
	MaxAttempts int
}

// Validate checks the configuration without contacting the server and
// returns an error naming the first field that is wrong.
func (c S3Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("blob: s3 config: "+format, args...)
	}
	switch {
	case c.Endpoint == "":
		return bad("Endpoint is empty (want host:port)")
	case strings.Contains(c.Endpoint, "://"):
		return bad("Endpoint %q must be host:port without a scheme (UseTLS selects https)", c.Endpoint)
	}
	host, port, err := net.SplitHostPort(c.Endpoint)
	if err != nil || host == "" || port == "" {
		return bad("Endpoint %q is not host:port", c.Endpoint)
	}
	if c.Bucket == "" {
		return bad("Bucket is empty")
	}
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		return bad("Bucket %q: %v", c.Bucket, err)
	}
	if c.AccessKey == "" {
		return bad("AccessKey is empty")
	}
	if c.SecretKey == "" {
		return bad("SecretKey is empty")
	}
	if c.CAFile != "" && !c.UseTLS {
		return bad("CAFile %q is set but UseTLS is false", c.CAFile)
	}
	if c.PartSize != 0 && (c.PartSize < minS3PartSize || c.PartSize > maxS3PartSize) {
		return bad("PartSize %d is outside S3's limits [5 MiB, 5 GiB]", c.PartSize)
	}
	if c.Timeout < 0 {
		return bad("Timeout %s is negative", c.Timeout)
	}
	if c.MaxAttempts < 0 {
		return bad("MaxAttempts %d is negative", c.MaxAttempts)
	}
	return nil
}

type s3Store struct {
	c        *minio.Client
	bucket   string
	endpoint string
	partSize uint64
	timeout  time.Duration
}

// NewS3 returns a Store keeping each object in cfg.Bucket of an
// S3-compatible server. It validates cfg, connects, and checks that the
// bucket exists and the credentials are accepted, creating the bucket if
// cfg.CreateBucket is set. Errors name what is wrong; when the server is
// unreachable IsTemporary reports true for the error.
//
// Put reads bodies of up to PartSize into memory and sends them in a
// single PUT (retried on transient failures); larger bodies go as a
// multipart upload, one part in memory at a time, aborted on failure. S3
// makes the object visible only when the PUT or the multipart completion
// succeeds, so no partial object is ever visible. A Put that fails after
// its body was sent in full (the connection drops while waiting for the
// answer) may still have stored the object: callers treat the key as
// unknown and let garbage collection find it.
//
// Timeout bounds how long the server may keep an operation waiting without
// progress: a request without a response, or an upload or download that
// stalls, fails with an error wrapping ErrTimeout (or context's
// DeadlineExceeded) after Timeout. Time spent in the caller's code (a
// Put's reader, between a Get reader's Reads, List's fn) does not count.
func NewS3(ctx context.Context, cfg S3Config) (Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultS3PartSize
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultS3Timeout
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultS3MaxAttempts
	}
	tr, err := minio.DefaultTransport(cfg.UseTLS)
	if err != nil {
		return nil, fmt.Errorf("blob: s3: transport: %w", err)
	}
	tr.Proxy = nil // the object store is infrastructure, not the web
	tr.ResponseHeaderTimeout = cfg.Timeout
	tr.MaxIdleConnsPerHost = 64
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("blob: s3 config: CAFile: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("blob: s3 config: CAFile %q holds no PEM certificate", cfg.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       cfg.UseTLS,
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   cfg.MaxAttempts,
	})
	if err != nil {
		return nil, fmt.Errorf("blob: s3: %w", err)
	}
	s := &s3Store{c: c, bucket: cfg.Bucket, endpoint: cfg.Endpoint, partSize: cfg.PartSize, timeout: cfg.Timeout}
	if err := s.checkBucket(ctx, cfg.CreateBucket, cfg.Region); err != nil {
		return nil, err
	}
	return s, nil
}

// checkBucket checks that the bucket exists and is ours to use, creating
// it when create is set.
func (s *s3Store) checkBucket(ctx context.Context, create bool, region string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := s.probe(ctx)
	if err == nil {
		return nil
	}
	if minio.ToErrorResponse(err).Code != "NoSuchBucket" {
		return s.startErr(err)
	}
	if !create {
		return fmt.Errorf("blob: s3 %s: bucket %q does not exist (create it, or set CreateBucket)", s.endpoint, s.bucket)
	}
	err = s.c.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	if err != nil {
		switch minio.ToErrorResponse(err).Code {
		case "BucketAlreadyOwnedByYou":
			return nil // created concurrently
		case "BucketAlreadyExists":
			return fmt.Errorf("blob: s3 %s: bucket %q belongs to another account: %w", s.endpoint, s.bucket, err)
		}
		return fmt.Errorf("blob: s3 %s: creating bucket %q: %w", s.endpoint, s.bucket, s.startErr(err))
	}
	return nil
}

// probe lists at most one key of the bucket: it succeeds only if the
// server answers, accepts the credentials and lets them read the bucket.
// (A listing, unlike HEAD, carries an error code servers fill in.)
func (s *s3Store) probe(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for obj := range s.c.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{MaxKeys: 1}) {
		return obj.Err
	}
	return nil
}

// startErr explains a failure of the first request to the server.
func (s *s3Store) startErr(err error) error {
	er := minio.ToErrorResponse(err)
	switch {
	case er.Code == "InvalidAccessKeyId" || er.Code == "XAdminUserNotFound":
		return fmt.Errorf("blob: s3 %s: credentials rejected: unknown AccessKey: %w", s.endpoint, err)
	case er.Code == "SignatureDoesNotMatch":
		return fmt.Errorf("blob: s3 %s: credentials rejected: wrong SecretKey for the AccessKey: %w", s.endpoint, err)
	case er.Code == "AccessDenied" || er.StatusCode == 403:
		return fmt.Errorf("blob: s3 %s: access to bucket %q denied: credentials rejected or not allowed to use the bucket (check AccessKey, SecretKey and the bucket policy): %w", s.endpoint, s.bucket, err)
	case IsTemporary(err):
		return fmt.Errorf("blob: s3 %s: server unreachable or failing: %w", s.endpoint, err)
	}
	return fmt.Errorf("blob: s3 %s: bucket %q: %w", s.endpoint, s.bucket, err)
}

// opErr wraps an error of operation op on key, reporting a watchdog timeout
// as such and a missing object as ErrNotFound.
func (s *s3Store) opErr(op, key string, wd *watchdog, err error) error {
	if wd != nil {
		err = wd.err(err)
	}
	er := minio.ToErrorResponse(err)
	if er.Code == "NoSuchKey" {
		return fmt.Errorf("blob: s3 %s %q: %w", op, key, ErrNotFound)
	}
	if er.Code == "NoSuchBucket" {
		return fmt.Errorf("blob: s3 %s %q: bucket %q does not exist: %w", op, key, s.bucket, err)
	}
	if key == "" {
		return fmt.Errorf("blob: s3 %s: %w", op, err)
	}
	return fmt.Errorf("blob: s3 %s %q: %w", op, key, err)
}

func (s *s3Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkPut(ctx, "s3", key, size); err != nil {
		return err
	}
	wctx, wd := newWatchdog(ctx, s.timeout)
	defer wd.stop()
	pr := &putReader{ctx: wctx, r: r, size: size, wd: wd}
	opts := minio.PutObjectOptions{PartSize: s.partSize, ContentType: "application/octet-stream", Progress: wd}
	if size > int64(s.partSize) {
		// Multipart, streamed one part at a time; aborted on failure.
		if _, err := s.c.PutObject(wctx, s.bucket, key, pr, size, opts); err != nil {
			return s.putErr(ctx, key, wd, pr, err)
		}
		return nil
	}
	// Read a body of up to one part into memory first: it then goes out as
	// one PUT that can be replayed on a transient failure, and a failing
	// reader or a canceled context stops it before anything is sent. A
	// body of unknown size that turns out larger continues as multipart.
	var buf bytes.Buffer
	if size > 0 {
		buf.Grow(int(size))
	}
	n, err := io.Copy(&buf, io.LimitReader(pr, int64(s.partSize)+1))
	if err != nil {
		return s.putErr(ctx, key, wd, pr, err)
	}
	if n > int64(s.partSize) {
		if _, err := s.c.PutObject(wctx, s.bucket, key, io.MultiReader(&buf, pr), -1, opts); err != nil {
			return s.putErr(ctx, key, wd, pr, err)
		}
		return nil
	}
	for attempt := 1; ; attempt++ {
		_, err = s.c.PutObject(wctx, s.bucket, key, bytes.NewReader(buf.Bytes()), n, opts)
		// A server keeping objects as files (Versity's posix backend) fails
		// a PUT whose directory a concurrent DELETE is pruning with
		// ExistingObjectIsDirectory: try again. A real conflict ("a/b"
		// exists, Put "a") fails the same way each time.
		if err == nil || attempt == 3 || minio.ToErrorResponse(err).Code != "ExistingObjectIsDirectory" {
			break
		}
	}
	if err != nil {
		return s.putErr(ctx, key, wd, pr, err)
	}
	return nil
}

// putErr reports why a Put failed: the caller's context, the body reader's
// own error (which the transport may have wrapped beyond recognition), or
// the server's.
func (s *s3Store) putErr(ctx context.Context, key string, wd *watchdog, pr *putReader, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("blob: s3 put %q: %w", key, cerr)
	}
	if pr.err != nil && !wd.fired.Load() {
		return fmt.Errorf("blob: s3 put %q: %w", key, pr.err)
	}
	return s.opErr("put", key, wd, err)
}

func (s *s3Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := checkGet(ctx, "s3", key, offset); err != nil {
		return nil, err
	}
	if length == 0 {
		// No range can express zero bytes: check existence only.
		if err := s.stat(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0 && length <= math.MaxInt64-offset:
		err := opts.SetRange(offset, offset+length-1)
		if err != nil {
			return nil, fmt.Errorf("blob: s3 get %q: %w", key, err)
		}
	case offset > 0:
		if err := opts.SetRange(offset, 0); err != nil {
			return nil, fmt.Errorf("blob: s3 get %q: %w", key, err)
		}
	}
	wctx, wd := newWatchdog(ctx, s.timeout)
	// One GET: the status tells a missing key at once, the body streams.
	body, _, _, err := minio.Core{Client: s.c}.GetObject(wctx, s.bucket, key, opts)
	if err != nil {
		wd.stop()
		if er := minio.ToErrorResponse(err); er.Code == "InvalidRange" || er.StatusCode == 416 {
			// Range starts at or past the end (or the object is empty):
			// nothing to read, if the object exists.
			if err := s.stat(ctx, key); err != nil {
				return nil, err
			}
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		return nil, s.opErr("get", key, wd, err)
	}
	wd.pause() // until the caller reads
	return &s3Reader{s: s, key: key, body: body, wd: wd}, nil
}

func (s *s3Store) stat(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return s.opErr("get", key, nil, err)
	}
	return nil
}

// s3Reader streams a GET response. The watchdog runs only inside Read:
// a caller that takes its time between reads is not the server stalling.
type s3Reader struct {
	s    *s3Store
	key  string
	body io.ReadCloser
	wd   *watchdog
}

func (r *s3Reader) Read(b []byte) (int, error) {
	r.wd.resume()
	n, err := r.body.Read(b)
	r.wd.pause()
	if err != nil && err != io.EOF {
		err = r.s.opErr("get", r.key, r.wd, err)
	}
	return n, err
}

func (r *s3Reader) Close() error {
	err := r.body.Close()
	r.wd.stop()
	return err
}

func (s *s3Store) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil
		}
		return s.opErr("delete", key, nil, err)
	}
	return nil
}

func (s *s3Store) List(ctx context.Context, prefix string, fn func(key string, modTime time.Time) error) error {
	if err := validPrefix(prefix); err != nil {
		return err
	}
	wctx, wd := newWatchdog(ctx, s.timeout)
	defer wd.stop()
	for obj := range s.c.ListObjectsIter(wctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return fmt.Errorf("blob: s3 list: %w", cerr)
			}
			return s.opErr("list", "", wd, obj.Err)
		}
		wd.kick()
		if strings.HasSuffix(obj.Key, "/") {
			continue // a "directory" marker, not an object
		}
		wd.pause() // fn's time is the caller's, not the server's
		err := fn(obj.Key, obj.LastModified)
		wd.resume()
		if err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: s3 list: %w", err)
	}
	return nil
}

// Ping checks that the server answers and the bucket exists and is
// accessible with the configured credentials.
func (s *s3Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.probe(ctx); err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchBucket" {
			return fmt.Errorf("blob: s3 ping %s: bucket %q does not exist: %w", s.endpoint, s.bucket, err)
		}
		return fmt.Errorf("blob: s3 ping: %w", s.startErr(err))
	}
	return nil
}
