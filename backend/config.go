// Package backend is the mailbox server: the only part of mailcluster that
// stores mail. It serves the mailbox.v1 gRPC API to frontends, keeps
// metadata in PostgreSQL (package store) and message bodies in a blob store
// (package blob: S3 or a local filesystem).
package backend

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Config is the backend's configuration. Defaults come from DefaultConfig;
// every field is documented in the README and settable by flag or
// MAILCLUSTER_* environment variable.
type Config struct {
	Listen     string `name:"grpc-listen" help:"address the gRPC server listens on"`
	HTTPListen string `name:"http-listen" help:"address for /metrics (Prometheus), /healthz and /readyz; empty: off"`
	HTTPPprof  bool   `name:"http-pprof" help:"also serve Go's profiler under /debug/pprof/ on http-listen (for diagnosis; keep http-listen private)"`
	// Authentication of callers: mTLS, a shared token, or (development only)
	// nothing at all.
	TLSCert  string `name:"grpc-tls-cert" help:"server certificate file (PEM) for gRPC over TLS"`
	TLSKey   string `name:"grpc-tls-key" help:"server private key file (PEM)"`
	ClientCA string `name:"grpc-client-ca" help:"CA file (PEM) that signs frontend client certificates; enables mTLS"`
	Token    string `name:"grpc-token" help:"shared secret that callers send as 'authorization: Bearer <token>'"`
	Insecure bool   `name:"grpc-insecure" help:"accept unauthenticated plaintext gRPC (local development only)"`

	PostgresDSN      string `name:"postgres-dsn" help:"PostgreSQL connection string (libpq keyword/value or URL)"`
	PostgresMaxConns int    `name:"postgres-max-conns" help:"maximum PostgreSQL connections of this backend"`
	// PostgresRandomPageCost is PostgreSQL's random_page_cost for this
	// backend's sessions. PostgreSQL's default (4) is for disks that seek;
	// with it the planner sorts a whole mailbox rather than read it in
	// UID order through the primary key.
	PostgresRandomPageCost float64 `name:"postgres-random-page-cost" help:"PostgreSQL random_page_cost for this backend's sessions (1.1 suits SSDs and cached metadata); 0 keeps the server's setting"`

	BlobDriver     string        `name:"blob-driver" help:"where message bodies are stored: s3 or fs"`
	BlobFSRoot     string        `name:"blob-fs-root" help:"directory for bodies when blob-driver is fs"`
	S3Endpoint     string        `name:"s3-endpoint" help:"S3 endpoint host:port"`
	S3Bucket       string        `name:"s3-bucket" help:"S3 bucket for message bodies"`
	S3AccessKey    string        `name:"s3-access-key" help:"S3 access key"`
	S3SecretKey    string        `name:"s3-secret-key" help:"S3 secret key"`
	S3Region       string        `name:"s3-region" help:"S3 region"`
	S3TLS          bool          `name:"s3-tls" help:"use HTTPS for S3"`
	S3CAFile       string        `name:"s3-ca-file" help:"extra CA file (PEM) for the S3 endpoint's certificate"`
	S3CreateBucket bool          `name:"s3-create-bucket" help:"create the bucket at start if it does not exist"`
	S3Timeout      time.Duration `name:"s3-timeout" help:"timeout of one S3 operation"`

	MaxMessageSize    int64  `name:"max-message-size" help:"largest message accepted by deliver and append, in bytes (K, M, G suffixes)"`
	MaxRecipients     int    `name:"max-recipients" help:"most recipients of one deliver call"`
	MemorySpool       int64  `name:"memory-spool" help:"messages up to this size are held in memory while being stored; larger ones are spooled to spool-dir"`
	SpoolDir          string `name:"spool-dir" help:"directory for spooling large messages while they are stored (default: the system temp dir)"`
	MaxSearchText     int    `name:"max-search-text" help:"bytes of decoded body text kept per message for SEARCH BODY/TEXT"`
	MaxUIDRanges      int    `name:"max-uid-ranges" help:"most ranges in one UID set"`
	MaxSearchDepth    int    `name:"max-search-depth" help:"deepest nesting of a SEARCH criteria tree"`
	MaxSearchKeys     int    `name:"max-search-keys" help:"most keys in one SEARCH criteria tree"`
	MaxMailboxNameLen int    `name:"max-mailbox-name" help:"longest mailbox name, in bytes"`
	MaxMailboxDepth   int    `name:"max-mailbox-depth" help:"most hierarchy levels in a mailbox name"`
	MaxMailboxes      int    `name:"max-mailboxes" help:"most mailboxes per account"`
	MaxWatchAccounts  int    `name:"max-watch-accounts" help:"most accounts one Watch stream may follow"`
	BodyRefCache      int64  `name:"body-location-cache" help:"memory for where message bodies are stored, so that reading a body again needs no PostgreSQL query (bytes; K, M, G suffixes; 0: off)"`

	SweepInterval time.Duration `name:"sweep-interval" help:"how often unreferenced bodies are looked for and deleted"`
	UploadGrace   time.Duration `name:"upload-grace" help:"age after which an upload that no message references is deleted; must exceed the longest deliver"`
	ExpungeLog    time.Duration `name:"expunge-log-retention" help:"how long expunged UIDs are remembered for QRESYNC clients; older ones resynchronise fully"`

	// The outbound queue: mail for remote recipients, delivered by every
	// backend's workers (see README, "Outbound mail").
	QueueWorkers      int           `name:"queue-workers" help:"concurrent outbound deliveries of this backend; 0: this backend queues mail but does not deliver it"`
	QueuePoll         time.Duration `name:"queue-poll-interval" help:"how often an idle backend looks for queued mail that is due"`
	QueueLease        time.Duration `name:"queue-lease" help:"how long a worker holds the recipients it is delivering; another backend retries them after it (a crashed worker's mail is sent again)"`
	QueueRetryMin     time.Duration `name:"queue-retry-min" help:"delay before the first retry after a temporary failure; it doubles with each attempt"`
	QueueRetryMax     time.Duration `name:"queue-retry-max" help:"longest delay between two attempts"`
	QueueLifetime     time.Duration `name:"queue-lifetime" help:"how long undeliverable mail is retried before it is bounced to the sender"`
	QueueDelayWarning time.Duration `name:"queue-delay-warning" help:"send the sender a delay warning once mail has waited this long; 0: never"`

	OutboundHelo              string        `name:"outbound-helo" help:"host name this backend gives in EHLO and in bounces (default: the system's host name)"`
	OutboundDNS               string        `name:"outbound-dns" help:"DNS server host:port for MX lookups (default: the system's resolv.conf)"`
	OutboundPort              int           `name:"outbound-port" help:"SMTP port of remote mail servers"`
	OutboundRelay             string        `name:"outbound-relay" help:"smarthost host:port that takes all outbound mail instead of the recipients' MX hosts"`
	OutboundRelayUser         string        `name:"outbound-relay-username" help:"AUTH PLAIN user name for the smarthost"`
	OutboundRelayPass         string        `name:"outbound-relay-password" help:"AUTH PLAIN password for the smarthost"`
	OutboundRelayImplicitTLS  bool          `name:"outbound-relay-implicit-tls" help:"connect to the smarthost with TLS (port 465); otherwise STARTTLS is required"`
	OutboundRelayCA           string        `name:"outbound-relay-ca" help:"CA file (PEM) that signs the smarthost's certificate (default: the system's roots)"`
	OutboundDomainConcurrency int           `name:"outbound-domain-concurrency" help:"most simultaneous connections of this backend to one destination domain"`
	OutboundConnectTimeout    time.Duration `name:"outbound-connect-timeout" help:"timeout for connecting to a remote mail server"`
	OutboundCommandTimeout    time.Duration `name:"outbound-command-timeout" help:"timeout for each SMTP command's reply"`
	OutboundDataTimeout       time.Duration `name:"outbound-data-timeout" help:"timeout for sending a message and its final reply"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Listen:                 "127.0.0.1:7070",
		HTTPListen:             "127.0.0.1:7071",
		PostgresMaxConns:       32,
		PostgresRandomPageCost: 1.1,
		BlobDriver:             "s3",
		S3Region:               "us-east-1",
		S3Timeout:              30 * time.Second,
		MaxMessageSize:         64 << 20,
		MaxRecipients:          1000,
		MemorySpool:            1 << 20,
		MaxSearchText:          256 << 10,
		MaxUIDRanges:           10000,
		MaxSearchDepth:         32,
		MaxSearchKeys:          1000,
		MaxMailboxNameLen:      512,
		MaxMailboxDepth:        32,
		MaxMailboxes:           10000,
		MaxWatchAccounts:       100000,
		BodyRefCache:           32 << 20,
		SweepInterval:          time.Minute,
		UploadGrace:            time.Hour,
		ExpungeLog:             30 * 24 * time.Hour,

		QueueWorkers:  16,
		QueuePoll:     5 * time.Second,
		QueueLease:    15 * time.Minute,
		QueueRetryMin: 5 * time.Minute,
		QueueRetryMax: time.Hour,
		QueueLifetime: 5 * 24 * time.Hour,

		OutboundPort:              25,
		OutboundDomainConcurrency: 20,
		OutboundConnectTimeout:    30 * time.Second,
		OutboundCommandTimeout:    5 * time.Minute,
		OutboundDataTimeout:       10 * time.Minute,
	}
}

// Validate checks the configuration; errors name the setting.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	if c.Listen == "" {
		bad("grpc-listen", "is required")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("grpc-tls-cert", "grpc-tls-cert and grpc-tls-key go together")
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		bad("grpc-client-ca", "mTLS needs grpc-tls-cert and grpc-tls-key")
	}
	for name, f := range map[string]string{"grpc-tls-cert": c.TLSCert, "grpc-tls-key": c.TLSKey, "grpc-client-ca": c.ClientCA, "s3-ca-file": c.S3CAFile} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				bad(name, "cannot read %s", f)
			}
		}
	}
	if !c.Insecure && c.ClientCA == "" && c.Token == "" {
		bad("grpc-client-ca", "callers must be authenticated: set grpc-client-ca (mTLS) or grpc-token, or grpc-insecure for local development")
	}
	if c.PostgresDSN == "" {
		bad("postgres-dsn", "is required")
	}
	if c.PostgresMaxConns < 2 {
		bad("postgres-max-conns", "must be at least 2")
	}
	if c.PostgresRandomPageCost != 0 && (c.PostgresRandomPageCost < 0.1 || c.PostgresRandomPageCost > 100) {
		bad("postgres-random-page-cost", "must be 0 (the server's setting) or between 0.1 and 100")
	}
	switch c.BlobDriver {
	case "s3":
		if c.S3Endpoint == "" {
			bad("s3-endpoint", "is required with blob-driver s3")
		}
		if c.S3Bucket == "" {
			bad("s3-bucket", "is required with blob-driver s3")
		}
		if c.S3AccessKey == "" || c.S3SecretKey == "" {
			bad("s3-access-key", "s3-access-key and s3-secret-key are required with blob-driver s3")
		}
	case "fs":
		if c.BlobFSRoot == "" {
			bad("blob-fs-root", "is required with blob-driver fs")
		}
	default:
		bad("blob-driver", "must be s3 or fs, not %q", c.BlobDriver)
	}
	positive := map[string]int64{
		"max-message-size": c.MaxMessageSize, "max-recipients": int64(c.MaxRecipients), "max-search-text": int64(c.MaxSearchText),
		"max-uid-ranges": int64(c.MaxUIDRanges), "max-search-depth": int64(c.MaxSearchDepth), "max-search-keys": int64(c.MaxSearchKeys),
		"max-mailbox-name": int64(c.MaxMailboxNameLen), "max-mailbox-depth": int64(c.MaxMailboxDepth), "max-mailboxes": int64(c.MaxMailboxes),
		"max-watch-accounts": int64(c.MaxWatchAccounts), "sweep-interval": int64(c.SweepInterval), "upload-grace": int64(c.UploadGrace),
		"expunge-log-retention": int64(c.ExpungeLog),
		"s3-timeout":            int64(c.S3Timeout),
		"queue-poll-interval":   int64(c.QueuePoll), "queue-lease": int64(c.QueueLease),
		"queue-retry-min": int64(c.QueueRetryMin), "queue-retry-max": int64(c.QueueRetryMax), "queue-lifetime": int64(c.QueueLifetime),
		"outbound-port": int64(c.OutboundPort), "outbound-domain-concurrency": int64(c.OutboundDomainConcurrency),
		"outbound-connect-timeout": int64(c.OutboundConnectTimeout), "outbound-command-timeout": int64(c.OutboundCommandTimeout),
		"outbound-data-timeout": int64(c.OutboundDataTimeout),
	}
	for name, v := range positive {
		if v <= 0 {
			bad(name, "must be positive")
		}
	}
	if c.BodyRefCache < 0 {
		bad("body-location-cache", "must not be negative")
	}
	if c.MemorySpool < 0 {
		bad("memory-spool", "must not be negative")
	}
	if c.QueueWorkers < 0 {
		bad("queue-workers", "must not be negative")
	}
	if c.QueueDelayWarning < 0 {
		bad("queue-delay-warning", "must not be negative")
	}
	if c.QueueRetryMax < c.QueueRetryMin {
		bad("queue-retry-max", "must not be less than queue-retry-min")
	}
	if c.OutboundPort > 65535 {
		bad("outbound-port", "must be a TCP port")
	}
	if (c.OutboundRelayUser == "") != (c.OutboundRelayPass == "") {
		bad("outbound-relay-username", "outbound-relay-username and outbound-relay-password go together")
	}
	if c.OutboundRelayUser != "" && c.OutboundRelay == "" {
		bad("outbound-relay-username", "needs outbound-relay")
	}
	if c.OutboundRelayCA != "" {
		if _, err := os.Stat(c.OutboundRelayCA); err != nil {
			bad("outbound-relay-ca", "cannot read %s", c.OutboundRelayCA)
		}
	}
	return errors.Join(errs...)
}
