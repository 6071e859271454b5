// Package deploy_test checks the deployment files without a Docker engine
// or a Kubernetes cluster:
//
//   - docker-compose.yml, alone and with deploy/compose/mtls.yml, is loaded
//     by compose-go (the loader behind `docker compose config`: schema,
//     interpolation, env files, consistency) and then checked against the
//     code: every MAILCLUSTER_* variable is a setting of the role that gets
//     it, each role's configuration passes its own Validate, and the pieces
//     agree with each other (tokens, keys, certificates, service names,
//     ports, health checks, the backends the directory names);
//   - every manifest under deploy/kubernetes is decoded strictly with
//     client-go's scheme (unknown fields, wrong types and unknown apiVersions
//     fail), every file a kustomization names must exist and decode, and
//     each kustomization is rendered with `kubectl kustomize` (when kubectl
//     is installed) and the result checked the same way as compose (the
//     demo overlay's in-cluster LDAP, PostgreSQL and S3 included);
//   - the Dockerfile keeps its promises (static build, pinned bases,
//     non-root user, the bind capability, the entrypoint).
//
// Each check is also run on broken copies of the files, which must fail.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"mailcluster/backend"
	"mailcluster/frontend"
	"mailcluster/internal/config"
)

// root is the repository root, relative to this package's directory.
const root = ".."

// ---------------------------------------------------------------------------
// Settings: what the code accepts.

// Roles of the mailcluster binary that the deployment files run.
const (
	roleBackend  = "backend"
	roleFrontend = "frontend"
)

// logSettings are defined by cmd/mailcluster for every long-running role.
var logSettings = []string{"MAILCLUSTER_LOG_FORMAT", "MAILCLUSTER_LOG_LEVEL"}

// knownSettings returns the MAILCLUSTER_* variables a role reads.
func knownSettings(role string) map[string]bool {
	var cfg any
	switch role {
	case roleBackend:
		c := backend.DefaultConfig()
		cfg = &c
	case roleFrontend:
		c := frontend.DefaultConfig()
		cfg = &c
	default:
		panic(role)
	}
	out := map[string]bool{}
	for _, s := range config.Describe(cfg) {
		out[s.Env] = true
	}
	for _, s := range logSettings {
		out[s] = true
	}
	return out
}

// checkRoleEnv checks a role's MAILCLUSTER_* environment: every variable is
// a setting of the role, and the configuration it makes passes the role's
// Validate. Files that the configuration names need not exist here, only
// lie below one of mounted (the directories mounted into the container).
func checkRoleEnv(where, role string, env map[string]string, mounted []string) []error {
	var errs []error
	known := knownSettings(role)
	for _, k := range sortedKeys(env) {
		if strings.HasPrefix(k, "MAILCLUSTER_") && !known[k] {
			errs = append(errs, fmt.Errorf("%s: %s is not a setting of mailcluster %s", where, k, role))
		}
	}
	getenv := func(k string) string { return env[k] }
	fset := flag.NewFlagSet(role, flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	var verr error
	switch role {
	case roleBackend:
		c := backend.DefaultConfig()
		if err := config.Load(&c, fset, nil, getenv); err != nil {
			return append(errs, fmt.Errorf("%s: %v", where, err))
		}
		verr = c.Validate()
	case roleFrontend:
		c := frontend.DefaultConfig()
		if err := config.Load(&c, fset, nil, getenv); err != nil {
			return append(errs, fmt.Errorf("%s: %v", where, err))
		}
		verr = c.Validate()
	}
	if verr == nil {
		return errs
	}
	fileErr := regexp.MustCompile(`cannot read (\S+)$`)
	for _, line := range strings.Split(verr.Error(), "\n") {
		if m := fileErr.FindStringSubmatch(line); m != nil && underAny(m[1], mounted) {
			continue
		}
		errs = append(errs, fmt.Errorf("%s: mailcluster %s would refuse its configuration: %s", where, role, line))
	}
	return errs
}

func underAny(path string, dirs []string) bool {
	for _, d := range dirs {
		if strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

// mailPorts are the ports a frontend serves: SMTP, submission,
// submissions, IMAP, IMAPS, POP3, POP3S.
var mailPorts = []string{"25", "587", "465", "143", "993", "110", "995"}

// frontendListenPorts returns the ports a frontend listens on with env
// (the settings' defaults where env leaves them unset).
func frontendListenPorts(env map[string]string) (map[string]bool, error) {
	c := frontend.DefaultConfig()
	fset := flag.NewFlagSet(roleFrontend, flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	if err := config.Load(&c, fset, nil, func(k string) string { return env[k] }); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, a := range []string{c.SMTPListen, c.SubmissionListen, c.SubmissionsListen, c.IMAPListen, c.IMAPSListen, c.POP3Listen, c.POP3SListen} {
		if p := listenPort(a); p != "" {
			out[p] = true
		}
	}
	return out, nil
}

// checkFrontendPorts checks that a frontend listens on every mail port.
func checkFrontendPorts(where string, env map[string]string) []error {
	ports, err := frontendListenPorts(env)
	if err != nil {
		return []error{fmt.Errorf("%s: %v", where, err)}
	}
	var errs []error
	for _, p := range mailPorts {
		if !ports[p] {
			errs = append(errs, fmt.Errorf("%s: the frontend does not listen on port %s", where, p))
		}
	}
	return errs
}

// seedMailHosts returns the mailHost values in deploy/ldap/seed.ldif.
func seedMailHosts(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "deploy/ldap/seed.ldif"))
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "mailHost:"); ok {
			set[strings.TrimSpace(v)] = true
		}
	}
	if len(set) == 0 {
		t.Fatal("seed.ldif names no mailHost")
	}
	return sortedKeys(set)
}

// parseBackends splits MAILCLUSTER_BACKENDS into name -> host:port.
func parseBackends(v string) (map[string]string, error) {
	out := map[string]string{}
	for _, pair := range strings.Split(v, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("%q is not name=host:port", pair)
		}
		out[name] = addr
	}
	return out, nil
}

func listenPort(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return port
}

// imagePinned tells whether an image reference names a tag or digest other
// than latest.
func imagePinned(ref string) error {
	if strings.Contains(ref, "@sha256:") {
		return nil
	}
	name := ref
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok || tag == "":
		return fmt.Errorf("image %q has no tag: pin one", ref)
	case tag == "latest":
		return fmt.Errorf("image %q uses :latest: pin a version", ref)
	}
	return nil
}

func absPath(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// mutate returns text with old replaced by new, failing the test when old
// is not there (so a mutation cannot silently stop testing anything).
func mutate(t *testing.T, text, old, new string) string {
	t.Helper()
	if !strings.Contains(text, old) {
		t.Fatalf("mutation target %q not found: update the test", old)
	}
	return strings.Replace(text, old, new, 1)
}

func joinErrs(errs []error) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// docker-compose.yml

// loadCompose loads a compose file the way `docker compose config` does,
// with the repository root as the project directory and an empty process
// environment (so the developer's shell cannot change the outcome).
func loadCompose(file string, env ...string) (*types.Project, error) {
	return loadComposeEnv([]string{file}, env)
}

// loadComposeFiles loads a compose file with overrides, as `docker compose
// -f a -f b` does.
func loadComposeFiles(files ...string) (*types.Project, error) {
	return loadComposeEnv(files, nil)
}

func loadComposeEnv(files, env []string) (*types.Project, error) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(absRoot),
		cli.WithEnv(env),
		cli.WithName("mailcluster"),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return opts.LoadProject(ctx)
}

// composeRole returns the mailcluster role a service runs, or "".
func composeRole(s types.ServiceConfig) string {
	if len(s.Entrypoint) == 0 && len(s.Command) > 0 && strings.HasPrefix(s.Image, "mailcluster:") {
		return s.Command[0]
	}
	return ""
}

func composeEnv(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

func volumeTargets(s types.ServiceConfig) []string {
	var out []string
	for _, v := range s.Volumes {
		out = append(out, v.Target)
	}
	return out
}

// oneShots are the compose services that run once and exit 0 (pki-init
// comes with deploy/compose/mtls.yml).
var oneShots = []string{"ldap-init", "tls-init", "bucket-init", "pki-init"}

// checkCompose checks what the compose loader cannot know: that the project
// is the mailcluster deployment the README describes and that its parts fit
// each other and the code.
func checkCompose(t *testing.T, p *types.Project) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	absRoot, _ := filepath.Abs(root)

	want := []string{"ldap-init", "ldap", "tls-init", "postgres", "s3", "bucket-init", "backend-1", "backend-2", "frontend-1", "frontend-2"}
	for _, name := range want {
		if _, ok := p.Services[name]; !ok {
			bad("service %s is missing", name)
		}
	}

	roles := map[string][]types.ServiceConfig{}
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		if s.Image == "" {
			bad("%s: no image", name)
		}
		if s.Build != nil {
			ctxDir := s.Build.Context
			if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
				bad("%s: build context %s is not a directory", name, ctxDir)
			}
			df := s.Build.Dockerfile
			if df == "" {
				df = "Dockerfile"
			}
			if !filepath.IsAbs(df) {
				df = filepath.Join(ctxDir, df)
			}
			if _, err := os.Stat(df); err != nil {
				bad("%s: Dockerfile %s: %v", name, df, err)
			}
		} else if err := imagePinned(s.Image); err != nil {
			bad("%s: %v", name, err)
		}
		if slices.Contains(oneShots, name) {
			if s.Restart != "no" {
				bad("%s: a one-shot must not restart (restart: \"no\"), has %q", name, s.Restart)
			}
		} else {
			if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 {
				bad("%s: no health check", name)
			}
			if s.Restart == "" || s.Restart == "no" {
				bad("%s: long-running service without a restart policy", name)
			}
		}
		for dep, d := range s.DependsOn {
			target, ok := p.Services[dep]
			if !ok {
				continue // the loader's consistency check reports it
			}
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if target.HealthCheck == nil || target.HealthCheck.Disable {
					bad("%s: waits for %s to be healthy, which has no health check", name, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if !slices.Contains(oneShots, dep) {
					bad("%s: waits for %s to complete, which is not a one-shot", name, dep)
				}
			default:
				bad("%s: depends on %s without a condition (service_healthy or service_completed_successfully)", name, dep)
			}
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					bad("%s: bind mount source %s: %v", name, v.Source, err)
				}
			}
		}
		for _, ef := range s.EnvFiles {
			if !strings.HasPrefix(ef.Path, absRoot) {
				bad("%s: env file %s is outside the repository", name, ef.Path)
			}
		}
		if r := composeRole(s); r != "" {
			roles[r] = append(roles[r], s)
		}
	}

	needs := func(svc, dep string, cond string) {
		s, ok := p.Services[svc]
		if !ok {
			return
		}
		if d, ok := s.DependsOn[dep]; !ok || d.Condition != cond {
			bad("%s: must depend on %s with condition %s", svc, dep, cond)
		}
	}
	needs("ldap", "ldap-init", types.ServiceConditionCompletedSuccessfully)
	needs("bucket-init", "s3", types.ServiceConditionHealthy)

	if len(roles[roleBackend]) < 2 || len(roles[roleFrontend]) < 2 {
		bad("want at least two backends and two frontends, have %d and %d", len(roles[roleBackend]), len(roles[roleFrontend]))
	}

	// Backends.
	backendAddr := map[string]string{} // service name -> gRPC port
	var grpcTokens []string
	for _, s := range roles[roleBackend] {
		env := composeEnv(s)
		errs = append(errs, checkRoleEnv("compose "+s.Name, roleBackend, env, volumeTargets(s))...)
		needs(s.Name, "postgres", types.ServiceConditionHealthy)
		needs(s.Name, "bucket-init", types.ServiceConditionCompletedSuccessfully)
		backendAddr[s.Name] = listenPort(env["MAILCLUSTER_GRPC_LISTEN"])
		grpcTokens = append(grpcTokens, env["MAILCLUSTER_GRPC_TOKEN"])
		errs = append(errs, checkComposeHTTPHealth(s, env)...)
		if ep := env["MAILCLUSTER_S3_ENDPOINT"]; env["MAILCLUSTER_BLOB_DRIVER"] == "s3" {
			host, _, _ := net.SplitHostPort(ep)
			s3, ok := p.Services[host]
			if !ok {
				bad("compose %s: S3 endpoint %q is no service", s.Name, ep)
			} else {
				s3env := composeEnv(s3)
				if s3env["ROOT_ACCESS_KEY"] != env["MAILCLUSTER_S3_ACCESS_KEY"] || s3env["ROOT_SECRET_KEY"] != env["MAILCLUSTER_S3_SECRET_KEY"] {
					bad("compose %s: S3 access/secret key differ from the S3 server's ROOT_ACCESS_KEY/ROOT_SECRET_KEY", s.Name)
				}
			}
		}
		if u, err := url.Parse(env["MAILCLUSTER_POSTGRES_DSN"]); err != nil || u.Host == "" {
			bad("compose %s: MAILCLUSTER_POSTGRES_DSN is not a postgres:// URL", s.Name)
		} else if pg, ok := p.Services[u.Hostname()]; !ok {
			bad("compose %s: PostgreSQL host %q is no service", s.Name, u.Hostname())
		} else {
			pgenv := composeEnv(pg)
			pw, _ := u.User.Password()
			if u.User.Username() != pgenv["POSTGRES_USER"] || pw != pgenv["POSTGRES_PASSWORD"] || strings.TrimPrefix(u.Path, "/") != pgenv["POSTGRES_DB"] {
				bad("compose %s: MAILCLUSTER_POSTGRES_DSN's user, password or database differ from the postgres service's", s.Name)
			}
		}
	}
	for _, tok := range grpcTokens {
		if tok != grpcTokens[0] {
			bad("compose: the backends' MAILCLUSTER_GRPC_TOKEN values differ")
			break
		}
	}
	errs = append(errs, checkComposeMTLS(p, roles)...)

	// Frontends.
	mailHosts := seedMailHosts(t)
	for _, s := range roles[roleFrontend] {
		env := composeEnv(s)
		errs = append(errs, checkRoleEnv("compose "+s.Name, roleFrontend, env, volumeTargets(s))...)
		needs(s.Name, "ldap", types.ServiceConditionHealthy)
		needs(s.Name, "tls-init", types.ServiceConditionCompletedSuccessfully)
		if len(grpcTokens) > 0 && env["MAILCLUSTER_BACKEND_TOKEN"] != grpcTokens[0] {
			bad("compose %s: MAILCLUSTER_BACKEND_TOKEN differs from the backends' MAILCLUSTER_GRPC_TOKEN", s.Name)
		}
		bs, err := parseBackends(env["MAILCLUSTER_BACKENDS"])
		if err != nil {
			bad("compose %s: MAILCLUSTER_BACKENDS: %v", s.Name, err)
		}
		for name, addr := range bs {
			host, port, _ := net.SplitHostPort(addr)
			if want, ok := backendAddr[host]; !ok || want != port {
				bad("compose %s: backend %s=%s is not a backend service's gRPC address", s.Name, name, addr)
			}
			needs(s.Name, host, types.ServiceConditionHealthy)
		}
		for _, h := range mailHosts {
			if _, ok := bs[h]; !ok {
				bad("compose %s: MAILCLUSTER_BACKENDS has no backend named %q (a mailHost in deploy/ldap/seed.ldif)", s.Name, h)
			}
		}
		for _, u := range strings.Split(env["MAILCLUSTER_LDAP_URLS"], ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			if err != nil {
				bad("compose %s: LDAP URL %q: %v", s.Name, u, err)
			} else if _, ok := p.Services[pu.Hostname()]; !ok {
				bad("compose %s: LDAP URL %q names no service", s.Name, u)
			}
		}
		errs = append(errs, checkComposeHTTPHealth(s, env)...)
		errs = append(errs, checkFrontendPorts("compose "+s.Name, env)...)
	}

	// The published frontend.
	if fe, ok := p.Services["frontend-1"]; ok {
		published := map[uint32]bool{}
		for _, pc := range fe.Ports {
			pub, err := strconv.ParseUint(pc.Published, 10, 32)
			if err == nil && uint32(pub) == pc.Target && pc.Protocol != "udp" {
				published[pc.Target] = true
			}
		}
		for _, port := range []uint32{25, 587, 465, 143, 993, 110, 995} {
			if !published[port] {
				bad("frontend-1: port %d is not published as %d/tcp", port, port)
			}
		}
	}
	return errs
}

// checkComposeMTLS checks how frontends and backends authenticate each
// other: the same token on both sides, or certificates that fit (backends
// serve TLS with a certificate named after their service and check client
// certificates; frontends dial TLS and present one), as pki-init makes them.
func checkComposeMTLS(p *types.Project, roles map[string][]types.ServiceConfig) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var pkiServers, pkiClients []string
	if pki, ok := p.Services["pki-init"]; ok {
		env := composeEnv(pki)
		pkiServers = strings.Fields(env["PKI_SERVERS"])
		pkiClients = strings.Fields(env["PKI_CLIENTS"])
	}
	backendTLS, backendMTLS := 0, 0
	for _, s := range roles[roleBackend] {
		env := composeEnv(s)
		if c := env["MAILCLUSTER_GRPC_TLS_CERT"]; c != "" {
			backendTLS++
			name := strings.TrimSuffix(filepath.Base(c), filepath.Ext(c))
			if _, ok := p.Services["pki-init"]; ok && (name != s.Name || !slices.Contains(pkiServers, s.Name)) {
				bad("compose %s: serves TLS with %s, but pki-init issues %s.crt for the DNS name the frontends dial", s.Name, c, s.Name)
			}
			if env["MAILCLUSTER_GRPC_TOKEN"] == "" && env["MAILCLUSTER_GRPC_CLIENT_CA"] == "" {
				bad("compose %s: neither a token nor a client CA authenticates callers", s.Name)
			}
		}
		if env["MAILCLUSTER_GRPC_CLIENT_CA"] != "" {
			backendMTLS++
		}
	}
	for _, s := range roles[roleFrontend] {
		env := composeEnv(s)
		dialsTLS := env["MAILCLUSTER_BACKEND_TLS"] == "true" || env["MAILCLUSTER_BACKEND_CA_FILE"] != "" || env["MAILCLUSTER_BACKEND_CERT"] != ""
		switch {
		case backendTLS > 0 && !dialsTLS:
			bad("compose %s: the backends serve TLS but the frontend dials plaintext (set MAILCLUSTER_BACKEND_CA_FILE)", s.Name)
		case backendTLS == 0 && dialsTLS:
			bad("compose %s: the frontend dials TLS but the backends serve plaintext", s.Name)
		}
		cert := env["MAILCLUSTER_BACKEND_CERT"]
		if backendMTLS > 0 && cert == "" {
			bad("compose %s: the backends require client certificates, the frontend has none (MAILCLUSTER_BACKEND_CERT)", s.Name)
		}
		if cert != "" && len(pkiClients) > 0 && !slices.Contains(pkiClients, strings.TrimSuffix(filepath.Base(cert), filepath.Ext(cert))) {
			bad("compose %s: client certificate %s is not one pki-init issues (%v)", s.Name, cert, pkiClients)
		}
	}
	return errs
}

// checkComposeHTTPHealth checks that a mailcluster service serves HTTP
// beyond loopback (for Prometheus) and that its health check asks /readyz
// there.
func checkComposeHTTPHealth(s types.ServiceConfig, env map[string]string) []error {
	var errs []error
	http := env["MAILCLUSTER_HTTP_LISTEN"]
	if h, _, err := net.SplitHostPort(http); err != nil || h == "127.0.0.1" || h == "localhost" || h == "::1" {
		errs = append(errs, fmt.Errorf("compose %s: MAILCLUSTER_HTTP_LISTEN %q is not set or loopback only", s.Name, http))
	}
	if s.HealthCheck != nil {
		hc := strings.Join(s.HealthCheck.Test, " ")
		if !strings.Contains(hc, "127.0.0.1:"+listenPort(http)+"/readyz") {
			errs = append(errs, fmt.Errorf("compose %s: health check %q does not ask /readyz on the HTTP port %s", s.Name, hc, listenPort(http)))
		}
	}
	return errs
}

func TestComposeFile(t *testing.T) {
	p, err := loadCompose(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	if errs := checkCompose(t, p); len(errs) > 0 {
		t.Fatalf("docker-compose.yml:%s", joinErrs(errs))
	}
	// The variables operators are told to set must keep it valid.
	p, err = loadCompose(filepath.Join(root, "docker-compose.yml"),
		"MAIL_HOSTNAME=mail.example.org", "MAIL_BIND=192.0.2.10", "MAILCLUSTER_TAG=1.2.3", "MAIL_TLS_DIR="+absPath(t, filepath.Join(root, "deploy/compose/tls")))
	if err != nil {
		t.Fatalf("docker-compose.yml with variables set does not load: %v", err)
	}
	if errs := checkCompose(t, p); len(errs) > 0 {
		t.Fatalf("docker-compose.yml with variables set:%s", joinErrs(errs))
	}
	if got := p.Services["frontend-1"].Environment["MAILCLUSTER_HOSTNAME"]; got == nil || *got != "mail.example.org" {
		t.Errorf("MAIL_HOSTNAME does not reach the frontends: %v", got)
	}
}

// deploy/compose/mtls.yml switches frontend<->backend authentication to
// mTLS; with it the project must still pass every check.
func TestComposeMTLSOverride(t *testing.T) {
	p, err := loadComposeFiles(filepath.Join(root, "docker-compose.yml"), filepath.Join(root, "deploy/compose/mtls.yml"))
	if err != nil {
		t.Fatalf("docker-compose.yml + mtls.yml does not load: %v", err)
	}
	if errs := checkCompose(t, p); len(errs) > 0 {
		t.Fatalf("docker-compose.yml + mtls.yml:%s", joinErrs(errs))
	}
	for _, name := range []string{"backend-1", "backend-2", "frontend-1", "frontend-2"} {
		env := composeEnv(p.Services[name])
		if env["MAILCLUSTER_GRPC_TOKEN"] != "" || env["MAILCLUSTER_BACKEND_TOKEN"] != "" {
			t.Errorf("%s: still uses the token", name)
		}
		if env["MAILCLUSTER_GRPC_CLIENT_CA"] == "" && env["MAILCLUSTER_BACKEND_CERT"] == "" {
			t.Errorf("%s: no certificate settings", name)
		}
		if _, ok := p.Services[name].DependsOn["pki-init"]; !ok {
			t.Errorf("%s: does not wait for pki-init", name)
		}
	}
	orig, err := os.ReadFile(filepath.Join(root, "deploy/compose/mtls.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, old, new string }{
		{"another backend's certificate", "MAILCLUSTER_GRPC_TLS_CERT: /etc/mailcluster/pki/backend-2.crt", "MAILCLUSTER_GRPC_TLS_CERT: /etc/mailcluster/pki/backend-1.crt"},
		{"frontend without a client certificate", "    MAILCLUSTER_BACKEND_CERT: /etc/mailcluster/pki/frontend.crt\n", ""},
		{"backend not issued a certificate", "PKI_SERVERS: backend-1 backend-2", "PKI_SERVERS: backend-1"},
		{"frontend dials plaintext", "    MAILCLUSTER_BACKEND_CA_FILE: /etc/mailcluster/pki/ca.crt\n    MAILCLUSTER_BACKEND_CERT: /etc/mailcluster/pki/frontend.crt\n    MAILCLUSTER_BACKEND_KEY: /etc/mailcluster/pki/frontend.key\n", ""},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".yml")
			if err := os.WriteFile(file, []byte(mutate(t, string(orig), c.old, c.new)), 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := loadComposeFiles(filepath.Join(root, "docker-compose.yml"), file)
			if err != nil {
				t.Logf("rejected by the loader: %v", err)
				return
			}
			errs := checkCompose(t, p)
			if len(errs) == 0 {
				t.Fatal("checkCompose accepted a broken override")
			}
			t.Logf("rejected:%s", joinErrs(errs))
		})
	}
}

func TestComposeRejectsBrokenFiles(t *testing.T) {
	orig, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new string
		loadFails      bool // the loader rejects it (otherwise checkCompose must)
	}{
		{"unknown field", "  postgres:\n    image:", "  postgres:\n    imagee: postgres:16\n    image:", true},
		{"wrong type", "      retries: 5\n", "      retries: five\n", true},
		{"bad port", `"${MAIL_BIND:-0.0.0.0}:993:993"`, `"${MAIL_BIND:-0.0.0.0}:993:99300"`, true},
		{"dependency on a missing service", "    bucket-init:\n      condition: service_completed_successfully", "    bucket-inti:\n      condition: service_completed_successfully", true},
		{"missing env file", "- path: deploy/compose/backend.env", "- path: deploy/compose/backends.env", true},
		{"unknown setting", "  MAILCLUSTER_SMTP_LISTEN: \":25\"", "  MAILCLUSTER_SMTP_LISTN: \":25\"", false},
		{"invalid setting", "  MAILCLUSTER_BLOB_DRIVER: s3", "  MAILCLUSTER_BLOB_DRIVER: nfs", false},
		{"token mismatch", "  MAILCLUSTER_LOCAL_DOMAINS: example.test", "  MAILCLUSTER_LOCAL_DOMAINS: example.test\n  MAILCLUSTER_BACKEND_TOKEN: something-else", false},
		{"unpinned image", "image: postgres:16-bookworm", "image: postgres", false},
		{"port not published", "      - \"${MAIL_BIND:-0.0.0.0}:995:995\"\n", "", false},
		{"backend unknown to the directory", "backend-2=backend-2:7070", "backend-3=backend-2:7070", false},
		{"health check on the wrong port", "http://127.0.0.1:7071/readyz", "http://127.0.0.1:7072/readyz", false},
		{"IMAPS moved", `MAILCLUSTER_IMAPS_LISTEN: ":993"`, `MAILCLUSTER_IMAPS_LISTEN: ":9993"`, false},
		{"frontend HTTP listener off", "  MAILCLUSTER_POP3S_LISTEN: \":995\"\n  MAILCLUSTER_HTTP_LISTEN: 0.0.0.0:7071\n", "  MAILCLUSTER_POP3S_LISTEN: \":995\"\n", false},
		{"missing service", "  frontend-2:\n    <<: *frontend\n    hostname: frontend-2\n", "", false},
		{"unconditional dependency", "    ldap-init:\n        condition: service_completed_successfully", "    ldap-init:\n        condition: service_started", false},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".yml")
			if err := os.WriteFile(file, []byte(mutate(t, string(orig), c.old, c.new)), 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := loadCompose(file)
			if err != nil {
				if !c.loadFails {
					t.Fatalf("expected checkCompose to reject it, but the loader did: %v", err)
				}
				t.Logf("rejected by the loader: %v", err)
				return
			}
			if c.loadFails {
				t.Fatalf("the compose loader accepted a broken file")
			}
			errs := checkCompose(t, p)
			if len(errs) == 0 {
				t.Fatalf("checkCompose accepted a broken file")
			}
			t.Logf("rejected:%s", joinErrs(errs))
		})
	}
}

// The README's deployment section documents every variable the compose
// files interpolate and every service they define.
func TestComposeDocumented(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(readme, []byte("## Deploying with docker-compose and Kubernetes"))
	if i < 0 {
		t.Fatal(`README.md has no "Deploying with docker-compose and Kubernetes" section`)
	}
	section := string(readme[i:])
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	vars := regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)`)
	for _, f := range []string{"docker-compose.yml", "deploy/compose/mtls.yml"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range vars.FindAllStringSubmatch(string(data), -1) {
			if !strings.Contains(section, "`"+m[1]+"`") && !strings.Contains(section, "$"+m[1]) {
				t.Errorf("%s uses ${%s}, which the README's deployment section does not mention", f, m[1])
			}
		}
	}
	p, err := loadComposeFiles(filepath.Join(root, "docker-compose.yml"), filepath.Join(root, "deploy/compose/mtls.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for name := range p.Services {
		if !strings.Contains(section, "`"+name+"`") {
			t.Errorf("service %s is not described in the README's deployment section", name)
		}
	}
}

// The env files that hold secrets agree with each other (the compose test
// checks what the services see; this names the file to fix).
func TestComposeSecretsAgree(t *testing.T) {
	read := func(name string) map[string]string {
		m, err := readEnvFile(filepath.Join(root, "deploy/compose", name))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	be, fe, s3 := read("backend.env"), read("frontend.env"), read("s3.env")
	if be["MAILCLUSTER_GRPC_TOKEN"] == "" || be["MAILCLUSTER_GRPC_TOKEN"] != fe["MAILCLUSTER_BACKEND_TOKEN"] {
		t.Error("backend.env MAILCLUSTER_GRPC_TOKEN must equal frontend.env MAILCLUSTER_BACKEND_TOKEN")
	}
	if be["MAILCLUSTER_S3_SECRET_KEY"] != s3["ROOT_SECRET_KEY"] {
		t.Error("backend.env MAILCLUSTER_S3_SECRET_KEY must equal s3.env ROOT_SECRET_KEY")
	}
	for k := range fe {
		if strings.Contains(k, "POSTGRES") || strings.Contains(k, "S3_") {
			t.Errorf("frontend.env holds a storage credential (%s): frontends never do", k)
		}
	}
}

// readEnvFile reads KEY=VALUE lines (the format of compose env files and of
// Kustomize generator envs).
func readEnvFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%s:%d: not KEY=VALUE", path, n)
		}
		out[k] = v
	}
	return out, sc.Err()
}

// ---------------------------------------------------------------------------
// Dockerfile

func checkDockerfile(text string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	// Join continuation lines; drop comments.
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(text, "\n") {
		tl := strings.TrimSpace(l)
		if strings.HasPrefix(tl, "#") && cur.Len() == 0 {
			continue
		}
		if strings.HasSuffix(tl, "\\") {
			cur.WriteString(strings.TrimSuffix(tl, "\\") + " ")
			continue
		}
		cur.WriteString(tl)
		if s := strings.TrimSpace(cur.String()); s != "" {
			lines = append(lines, s)
		}
		cur.Reset()
	}
	args := map[string]string{}
	var froms []string
	var user, entrypoint string
	var all strings.Builder
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		all.WriteString(l + "\n")
		switch strings.ToUpper(instr) {
		case "ARG":
			k, v, _ := strings.Cut(rest, "=")
			args[k] = v
		case "FROM":
			img := strings.Fields(rest)[0]
			img = os.Expand(img, func(k string) string { return args[k] })
			froms = append(froms, img)
		case "USER":
			user = rest
		case "ENTRYPOINT":
			entrypoint = rest
		}
	}
	if len(froms) < 2 {
		bad("not a multi-stage build (%d FROM)", len(froms))
	}
	for _, f := range froms {
		if err := imagePinned(f); err != nil {
			bad("FROM %s: %v", f, err)
		}
	}
	if len(froms) > 0 && !strings.HasPrefix(froms[0], "golang:1.26") {
		bad("the build stage is %s, want golang:1.26", froms[0])
	}
	s := all.String()
	for _, want := range []string{"CGO_ENABLED=0", "go build", "./cmd/mailcluster", "setcap cap_net_bind_service=+ep"} {
		if !strings.Contains(s, want) {
			bad("the Dockerfile does not contain %q", want)
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		bad("USER %q: the image must run as a non-root user", user)
	} else if _, err := strconv.Atoi(u); err != nil {
		bad("USER %q: use a numeric uid so Kubernetes can check runAsNonRoot", user)
	}
	if entrypoint != `["mailcluster"]` {
		bad(`ENTRYPOINT %s, want ["mailcluster"]`, entrypoint)
	}
	return errs
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := checkDockerfile(string(data)); len(errs) > 0 {
		t.Fatalf("Dockerfile:%s", joinErrs(errs))
	}
	// The image's user must be the one the compose TLS init and the
	// Kubernetes securityContexts name.
	if !strings.Contains(string(data), "USER 10001:10001") {
		t.Error("Dockerfile: USER is not 10001:10001 (tls-init and the manifests assume it)")
	}
	// The build context keeps what the build needs.
	ign, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(ign), "\n") {
		l = strings.TrimSpace(l)
		for _, need := range []string{"go.mod", "go.sum", "cmd", "backend", "frontend", "internal", "proto", "directory", "admin", "third_party"} {
			if l == need || l == need+"/" || l == "*" {
				t.Errorf(".dockerignore excludes %s, which the build needs", need)
			}
		}
	}
	bad := map[string]string{
		"unpinned runtime":  strings.Replace(string(data), "alpine:3.22", "alpine", 1),
		"root user":         strings.Replace(string(data), "USER 10001:10001", "USER root", 1),
		"cgo":               strings.Replace(string(data), "CGO_ENABLED=0", "CGO_ENABLED=1", 1),
		"no capability":     strings.Replace(string(data), "setcap cap_net_bind_service=+ep", "true", 1),
		"shell entrypoint":  strings.Replace(string(data), `ENTRYPOINT ["mailcluster"]`, "ENTRYPOINT mailcluster", 1),
		"single stage":      strings.Replace(string(data), "FROM ${GO_IMAGE} AS build", "", 1),
		"floating go image": strings.Replace(string(data), "GO_IMAGE=golang:1.26", "GO_IMAGE=golang:latest", 1),
	}
	for name, text := range bad {
		if text == string(data) {
			t.Errorf("mutation %q changed nothing: update the test", name)
			continue
		}
		if errs := checkDockerfile(text); len(errs) == 0 {
			t.Errorf("checkDockerfile accepted a broken Dockerfile (%s)", name)
		}
	}
}

// ---------------------------------------------------------------------------
// Kubernetes

// strictCodec decodes with client-go's scheme and rejects unknown and
// duplicate fields.
var strictCodec = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

// apiVersions are the versions this repository may use, per kind: current,
// GA versions only.
var apiVersions = map[string]string{
	"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1",
	"HorizontalPodAutoscaler": "autoscaling/v2", "PodDisruptionBudget": "policy/v1", "Namespace": "v1",
	"ServiceAccount": "v1", "NetworkPolicy": "networking.k8s.io/v1",
}

// decodeManifests splits a multi-document YAML stream and decodes each
// document strictly.
func decodeManifests(name string, data []byte) ([]runtime.Object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []runtime.Object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", name, i, err)
		}
		if isEmptyYAML(doc) {
			continue
		}
		obj, gvk, err := strictCodec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", name, i, err)
		}
		if want, ok := apiVersions[gvk.Kind]; !ok {
			return nil, fmt.Errorf("%s: document %d: kind %s is not used by mailcluster (add it to apiVersions in deploy_test.go)", name, i, gvk.Kind)
		} else if gvk.GroupVersion().String() != want {
			return nil, fmt.Errorf("%s: document %d: %s is %s, want %s", name, i, gvk.Kind, gvk.GroupVersion(), want)
		}
		out = append(out, obj)
	}
}

func isEmptyYAML(doc []byte) bool {
	for _, l := range strings.Split(string(doc), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") && l != "---" {
			return false
		}
	}
	return true
}

// kustomization is the part of Kustomize's format this repository uses.
// Decoding is strict: a field not listed here fails the test, so a new
// Kustomize feature is only used together with a check of it.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels,omitempty"`
	Resources          []string    `json:"resources,omitempty"`
	ConfigMapGenerator []generator `json:"configMapGenerator,omitempty"`
	SecretGenerator    []generator `json:"secretGenerator,omitempty"`
	Images             []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
	Replicas []struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	} `json:"replicas,omitempty"`
	Patches []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
}

type generator struct {
	Name     string   `json:"name"`
	Behavior string   `json:"behavior,omitempty"`
	Type     string   `json:"type,omitempty"`
	Envs     []string `json:"envs,omitempty"`
	Files    []string `json:"files,omitempty"`
	Literals []string `json:"literals,omitempty"`
}

// loadKustomization checks a kustomization directory without rendering it:
// the file decodes strictly, every resource exists and decodes (or is a
// kustomization itself, checked recursively), every generator input
// exists and parses, every patch exists and decodes. An env file that is
// kept out of git may be represented by NAME.example. It returns the files
// it read.
func loadKustomization(dir string, seen map[string]bool) ([]string, error) {
	abs, _ := filepath.Abs(dir)
	if seen[abs] {
		return nil, fmt.Errorf("%s: kustomization cycle", dir)
	}
	seen[abs] = true
	file := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: apiVersion/kind %s/%s, want kustomize.config.k8s.io/v1beta1 Kustomization", file, k.APIVersion, k.Kind)
	}
	files := []string{file}
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %v", file, r, err)
		}
		if st.IsDir() {
			sub, err := loadKustomization(p, seen)
			if err != nil {
				return nil, err
			}
			files = append(files, sub...)
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if _, err := decodeManifests(p, data); err != nil {
			return nil, err
		}
		files = append(files, p)
	}
	for _, g := range append(append([]generator(nil), k.ConfigMapGenerator...), k.SecretGenerator...) {
		if g.Name == "" {
			return nil, fmt.Errorf("%s: generator without a name", file)
		}
		switch g.Behavior {
		case "", "create", "merge", "replace":
		default:
			return nil, fmt.Errorf("%s: generator %s: behavior %q", file, g.Name, g.Behavior)
		}
		for _, e := range g.Envs {
			p := filepath.Join(dir, e)
			if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
				p += ".example"
			}
			if _, err := readEnvFile(p); err != nil {
				return nil, fmt.Errorf("%s: generator %s: %v", file, g.Name, err)
			}
			files = append(files, p)
		}
		for _, f := range g.Files {
			_, src, ok := strings.Cut(f, "=")
			if !ok {
				src = f
			}
			p := filepath.Join(dir, src)
			if _, err := os.Stat(p); err != nil {
				return nil, fmt.Errorf("%s: generator %s: %v", file, g.Name, err)
			}
			files = append(files, p)
		}
	}
	for _, pt := range k.Patches {
		p := filepath.Join(dir, pt.Path)
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s: patch %s: %v", file, pt.Path, err)
		}
		if _, err := decodeManifests(p, data); err != nil {
			return nil, err
		}
		files = append(files, p)
	}
	return files, nil
}

// kustomizationDirs lists the directories under deploy/kubernetes that hold
// a kustomization.yaml.
func kustomizationDirs(t *testing.T, base string) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 2 {
		t.Fatalf("found %d kustomizations under %s, want a base and overlays", len(dirs), base)
	}
	return dirs
}

// copyTree copies src to dst and stands in each NAME.example for a missing
// NAME (the secret files an operator writes from them).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, data, 0o644); err != nil {
			return err
		}
		if real, ok := strings.CutSuffix(p, ".example"); ok {
			if _, err := os.Stat(real); errors.Is(err, fs.ErrNotExist) {
				return os.WriteFile(strings.TrimSuffix(target, ".example"), data, 0o644)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// render runs `kubectl kustomize dir` and decodes the output strictly.
func render(dir string) ([]runtime.Object, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", "kustomize", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s: %v: %s", dir, err, stderr.String())
	}
	return decodeManifests("kubectl kustomize "+dir, out)
}

// renderSimple renders a kustomization without kubectl, for the features a
// base uses: file resources, ConfigMap and Secret generators (without the
// name hash, which kubectl adds to names and references alike) and image
// tags. Labels and patches are not applied.
func renderSimple(dir string) ([]runtime.Object, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, err
	}
	if len(k.Patches) > 0 || len(k.Replicas) > 0 {
		return nil, fmt.Errorf("%s: patches and replicas need kubectl kustomize", dir)
	}
	var objs []runtime.Object
	for _, r := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %v (nested kustomizations need kubectl kustomize)", dir, r, err)
		}
		o, err := decodeManifests(r, data)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	gen := func(g generator) (map[string]string, error) {
		out := map[string]string{}
		for _, e := range g.Envs {
			m, err := readEnvFile(filepath.Join(dir, e))
			if err != nil {
				return nil, err
			}
			maps.Copy(out, m)
		}
		return out, nil
	}
	for _, g := range k.ConfigMapGenerator {
		d, err := gen(g)
		if err != nil {
			return nil, err
		}
		cm := &corev1.ConfigMap{Data: d}
		cm.Name = g.Name
		objs = append(objs, cm)
	}
	for _, g := range k.SecretGenerator {
		d, err := gen(g)
		if err != nil {
			return nil, err
		}
		sec := &corev1.Secret{Data: map[string][]byte{}}
		sec.Name = g.Name
		for k, v := range d {
			sec.Data[k] = []byte(v)
		}
		objs = append(objs, sec)
	}
	for _, obj := range objs {
		var spec *corev1.PodSpec
		switch v := obj.(type) {
		case *appsv1.Deployment:
			spec = &v.Spec.Template.Spec
		case *appsv1.StatefulSet:
			spec = &v.Spec.Template.Spec
		default:
			continue
		}
		for i := range spec.Containers {
			c := &spec.Containers[i]
			for _, im := range k.Images {
				if c.Image == im.Name {
					name := im.Name
					if im.NewName != "" {
						name = im.NewName
					}
					c.Image = name + ":" + im.NewTag
				}
			}
		}
	}
	return objs, nil
}

func needKubectl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not installed: the kustomizations are loaded file by file but not rendered (apt-get install kubectl)")
	}
}

// externalSecrets are Secrets the manifests use but do not create: the
// operator (or cert-manager, or CloudNativePG) does.
var externalSecrets = map[string]string{
	"mailcluster-tls":    "the mail ports' certificate (kubectl create secret tls, or cert-manager)",
	"mailcluster-db-app": "written by CloudNativePG for the Cluster mailcluster-db",
}

type k8sObjects struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs         map[string]*policyv1.PodDisruptionBudget
	netpols      map[string]*networkingv1.NetworkPolicy
}

func index(objs []runtime.Object) (k8sObjects, []error) {
	o := k8sObjects{map[string]*appsv1.Deployment{}, map[string]*appsv1.StatefulSet{}, map[string]*corev1.Service{},
		map[string]*corev1.ConfigMap{}, map[string]*corev1.Secret{}, map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		map[string]*policyv1.PodDisruptionBudget{}, map[string]*networkingv1.NetworkPolicy{}}
	var errs []error
	dup := func(kind, name string, exists bool) {
		if exists {
			errs = append(errs, fmt.Errorf("%s %s is defined twice", kind, name))
		}
	}
	for _, obj := range objs {
		switch v := obj.(type) {
		case *appsv1.Deployment:
			_, ok := o.deployments[v.Name]
			dup("Deployment", v.Name, ok)
			o.deployments[v.Name] = v
		case *appsv1.StatefulSet:
			_, ok := o.statefulSets[v.Name]
			dup("StatefulSet", v.Name, ok)
			o.statefulSets[v.Name] = v
		case *corev1.Service:
			_, ok := o.services[v.Name]
			dup("Service", v.Name, ok)
			o.services[v.Name] = v
		case *corev1.ConfigMap:
			_, ok := o.configMaps[v.Name]
			dup("ConfigMap", v.Name, ok)
			o.configMaps[v.Name] = v
		case *corev1.Secret:
			_, ok := o.secrets[v.Name]
			dup("Secret", v.Name, ok)
			o.secrets[v.Name] = v
		case *autoscalingv2.HorizontalPodAutoscaler:
			_, ok := o.hpas[v.Name]
			dup("HorizontalPodAutoscaler", v.Name, ok)
			o.hpas[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			_, ok := o.pdbs[v.Name]
			dup("PodDisruptionBudget", v.Name, ok)
			o.pdbs[v.Name] = v
		case *networkingv1.NetworkPolicy:
			_, ok := o.netpols[v.Name]
			dup("NetworkPolicy", v.Name, ok)
			o.netpols[v.Name] = v
		}
	}
	return o, errs
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// workload is a pod template with where it came from.
type workload struct {
	kind, name string
	replicas   int32
	tmpl       *corev1.PodTemplateSpec
}

// checkKubernetes checks a rendered set of objects: the mailcluster
// deployment the README describes, with references that resolve, probes,
// resources, security settings, and settings the code accepts.
func checkKubernetes(t *testing.T, objs []runtime.Object) []error {
	o, errs := index(objs)
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	fe, ok := o.deployments["frontend"]
	if !ok {
		bad("Deployment frontend is missing")
		return errs
	}
	be, ok := o.statefulSets["backend"]
	if !ok {
		bad("StatefulSet backend is missing")
		return errs
	}
	if fe.Spec.Replicas != nil {
		if _, ok := o.hpas["frontend"]; ok {
			bad("Deployment frontend: sets replicas although the HorizontalPodAutoscaler owns them (each apply would reset the count)")
		}
	}
	var workloads []workload
	for _, name := range sortedKeys(o.deployments) {
		d := o.deployments[name]
		workloads = append(workloads, workload{"Deployment", name, ptrOr(d.Spec.Replicas, 1), &d.Spec.Template})
	}
	for _, name := range sortedKeys(o.statefulSets) {
		s := o.statefulSets[name]
		workloads = append(workloads, workload{"StatefulSet", name, ptrOr(s.Spec.Replicas, 1), &s.Spec.Template})
	}
	for _, name := range sortedKeys(o.deployments) {
		d := o.deployments[name]
		if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			bad("Deployment %s: selector does not match its pod template", name)
		}
	}
	for _, name := range sortedKeys(o.statefulSets) {
		s := o.statefulSets[name]
		if s.Spec.Selector == nil || !selects(s.Spec.Selector.MatchLabels, s.Spec.Template.Labels) {
			bad("StatefulSet %s: selector does not match its pod template", name)
		}
	}

	// Services select pods and name ports those pods have.
	for _, name := range sortedKeys(o.services) {
		svc := o.services[name]
		var matched []workload
		for _, w := range workloads {
			if selects(svc.Spec.Selector, w.tmpl.Labels) {
				matched = append(matched, w)
			}
		}
		if len(matched) == 0 {
			bad("Service %s: selector %v matches no pod template", name, svc.Spec.Selector)
			continue
		}
		for _, sp := range svc.Spec.Ports {
			for _, w := range matched {
				if _, ok := containerPort(w.tmpl, sp.TargetPort); !ok {
					bad("Service %s: port %s targets %s, which %s %s's containers do not expose", name, sp.Name, sp.TargetPort.String(), w.kind, w.name)
				}
			}
		}
	}

	// Frontend entry point.
	if svc, ok := o.services["frontend"]; !ok {
		bad("Service frontend is missing")
	} else {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			bad("Service frontend: type %s, want LoadBalancer", svc.Spec.Type)
		}
		if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
			bad("Service frontend: externalTrafficPolicy %q, want Local (keeps the client's address)", svc.Spec.ExternalTrafficPolicy)
		}
		ports := map[int32]bool{}
		for _, sp := range svc.Spec.Ports {
			ports[sp.Port] = true
		}
		for _, p := range []int32{25, 587, 465, 143, 993, 110, 995} {
			if !ports[p] {
				bad("Service frontend: port %d is missing", p)
			}
		}
	}
	if hpa, ok := o.hpas["frontend"]; !ok {
		bad("HorizontalPodAutoscaler frontend is missing")
	} else {
		ref := hpa.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != fe.Name {
			bad("HorizontalPodAutoscaler frontend: scales %s %s %s, want apps/v1 Deployment frontend", ref.APIVersion, ref.Kind, ref.Name)
		}
		if ptrOr(hpa.Spec.MinReplicas, 1) < 2 || hpa.Spec.MaxReplicas < ptrOr(hpa.Spec.MinReplicas, 1) {
			bad("HorizontalPodAutoscaler frontend: minReplicas %d, maxReplicas %d (want at least 2, max >= min)", ptrOr(hpa.Spec.MinReplicas, 1), hpa.Spec.MaxReplicas)
		}
	}
	for _, name := range []string{"frontend", "backend"} {
		hasPDB := false
		for _, pdb := range o.pdbs {
			w := fe.Spec.Template.Labels
			if name == "backend" {
				w = be.Spec.Template.Labels
			}
			if pdb.Spec.Selector != nil && selects(pdb.Spec.Selector.MatchLabels, w) {
				hasPDB = true
				if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
					bad("PodDisruptionBudget %s: neither minAvailable nor maxUnavailable", pdb.Name)
				}
			}
		}
		if !hasPDB {
			bad("no PodDisruptionBudget selects the %s pods", name)
		}
	}
	for _, pdb := range o.pdbs {
		matched := false
		for _, w := range workloads {
			if pdb.Spec.Selector != nil && selects(pdb.Spec.Selector.MatchLabels, w.tmpl.Labels) {
				matched = true
			}
		}
		if !matched {
			bad("PodDisruptionBudget %s selects no pods", pdb.Name)
		}
	}

	// NetworkPolicies select pods, let the frontends reach the backends'
	// gRPC port and name ports the selected pods have.
	for _, name := range sortedKeys(o.netpols) {
		np := o.netpols[name]
		var sel []workload
		for _, w := range workloads {
			if selects(np.Spec.PodSelector.MatchLabels, w.tmpl.Labels) {
				sel = append(sel, w)
			}
		}
		if len(sel) == 0 {
			bad("NetworkPolicy %s selects no pods", name)
		}
		for _, rule := range np.Spec.Ingress {
			for _, from := range rule.From {
				if from.PodSelector == nil {
					continue
				}
				ok := false
				for _, w := range workloads {
					ok = ok || selects(from.PodSelector.MatchLabels, w.tmpl.Labels)
				}
				if !ok {
					bad("NetworkPolicy %s: a rule admits pods %v, which no workload has", name, from.PodSelector.MatchLabels)
				}
			}
			for _, p := range rule.Ports {
				for _, w := range sel {
					if p.Port != nil {
						if _, ok := containerPort(w.tmpl, *p.Port); !ok {
							bad("NetworkPolicy %s: port %s is not a port of %s %s", name, p.Port.String(), w.kind, w.name)
						}
					}
				}
			}
		}
		if selects(np.Spec.PodSelector.MatchLabels, be.Spec.Template.Labels) && !admits(np, fe.Spec.Template.Labels, "grpc") {
			bad("NetworkPolicy %s: the frontends cannot reach the backends' gRPC port", name)
		}
	}

	// Backends: a headless Service gives stable names.
	hs, ok := o.services[be.Spec.ServiceName]
	if !ok {
		bad("StatefulSet backend: serviceName %q is no Service", be.Spec.ServiceName)
	} else if hs.Spec.ClusterIP != corev1.ClusterIPNone {
		bad("Service %s: not headless (clusterIP: None)", hs.Name)
	}

	// Every pod template: images, probes, resources, security, references,
	// settings.
	envs := map[string]map[string]string{}
	for _, w := range workloads {
		where := w.kind + " " + w.name
		ps := w.tmpl.Spec
		if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
			bad("%s: pod securityContext.runAsNonRoot is not true", where)
		}
		mounted := map[string]string{} // volume name -> mount path
		for _, c := range ps.Containers {
			cw := where + " container " + c.Name
			if err := imagePinned(c.Image); err != nil {
				bad("%s: %v", cw, err)
			}
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				bad("%s: needs a readiness and a liveness probe", cw)
			}
			for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if pr == nil {
					continue
				}
				var port intstr.IntOrString
				switch {
				case pr.HTTPGet != nil:
					port = pr.HTTPGet.Port
				case pr.TCPSocket != nil:
					port = pr.TCPSocket.Port
				case pr.GRPC != nil:
					port = intstr.FromInt32(pr.GRPC.Port)
				default:
					continue
				}
				if _, ok := containerPort(w.tmpl, port); !ok {
					bad("%s: a probe uses port %s, which the container does not expose", cw, port.String())
				}
			}
			req, lim := c.Resources.Requests, c.Resources.Limits
			if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
				bad("%s: needs cpu and memory requests and a memory limit", cw)
			}
			sc := c.SecurityContext
			isMailcluster := len(c.Args) > 0 && (c.Args[0] == roleBackend || c.Args[0] == roleFrontend)
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				bad("%s: securityContext must set allowPrivilegeEscalation: false and drop ALL capabilities", cw)
			} else if isMailcluster && !slices.Contains(sc.Capabilities.Add, "NET_BIND_SERVICE") {
				bad("%s: the image's binary has the file capability cap_net_bind_service: add NET_BIND_SERVICE back or it cannot execute", cw)
			}
			for _, vm := range c.VolumeMounts {
				mounted[vm.Name] = vm.MountPath
			}
			env := map[string]string{}
			for _, ef := range c.EnvFrom {
				switch {
				case ef.ConfigMapRef != nil:
					cm, ok := o.configMaps[ef.ConfigMapRef.Name]
					if !ok {
						bad("%s: envFrom ConfigMap %s does not exist", cw, ef.ConfigMapRef.Name)
						continue
					}
					for k, v := range cm.Data {
						env[k] = v
					}
				case ef.SecretRef != nil:
					s, ok := o.secrets[ef.SecretRef.Name]
					if !ok {
						bad("%s: envFrom Secret %s does not exist", cw, ef.SecretRef.Name)
						continue
					}
					for k, v := range secretData(s) {
						env[k] = v
					}
				}
			}
			for _, e := range c.Env {
				switch {
				case e.ValueFrom == nil:
					env[e.Name] = e.Value
				case e.ValueFrom.SecretKeyRef != nil:
					ref := e.ValueFrom.SecretKeyRef
					if s, ok := o.secrets[ref.Name]; ok {
						v, ok := secretData(s)[ref.Key]
						if !ok {
							bad("%s: env %s: Secret %s has no key %s", cw, e.Name, ref.Name, ref.Key)
						}
						env[e.Name] = v
					} else if _, ok := externalSecrets[ref.Name]; ok {
						env[e.Name] = externalValue(e.Name)
					} else {
						bad("%s: env %s: Secret %s does not exist", cw, e.Name, ref.Name)
					}
				case e.ValueFrom.ConfigMapKeyRef != nil:
					ref := e.ValueFrom.ConfigMapKeyRef
					cm, ok := o.configMaps[ref.Name]
					if !ok {
						bad("%s: env %s: ConfigMap %s does not exist", cw, e.Name, ref.Name)
						continue
					}
					env[e.Name] = cm.Data[ref.Key]
				}
			}
			if isMailcluster {
				var dirs []string
				for _, vm := range c.VolumeMounts {
					dirs = append(dirs, vm.MountPath)
				}
				errs = append(errs, checkRoleEnv(cw, c.Args[0], env, dirs)...)
				envs[c.Args[0]] = env
			}
		}
		for _, v := range ps.Volumes {
			if _, ok := mounted[v.Name]; !ok {
				bad("%s: volume %s is not mounted", where, v.Name)
			}
			switch {
			case v.Secret != nil:
				if _, ok := o.secrets[v.Secret.SecretName]; !ok {
					if _, ok := externalSecrets[v.Secret.SecretName]; !ok {
						bad("%s: volume %s: Secret %s does not exist", where, v.Name, v.Secret.SecretName)
					}
				}
			case v.ConfigMap != nil:
				if _, ok := o.configMaps[v.ConfigMap.Name]; !ok {
					bad("%s: volume %s: ConfigMap %s does not exist", where, v.Name, v.ConfigMap.Name)
				}
			}
		}
	}

	// Probes ask each role's HTTP listener: /readyz for readiness,
	// /healthz for liveness.
	for _, w := range []workload{{"StatefulSet", "backend", 0, &be.Spec.Template}, {"Deployment", "frontend", 0, &fe.Spec.Template}} {
		role := w.name
		if len(w.tmpl.Spec.Containers) == 0 || envs[role] == nil {
			continue
		}
		c := w.tmpl.Spec.Containers[0]
		httpPort := listenPort(envs[role]["MAILCLUSTER_HTTP_LISTEN"])
		if httpPort == "" {
			bad("%s %s: MAILCLUSTER_HTTP_LISTEN is not set (probes and /metrics need it)", w.kind, w.name)
			continue
		}
		for name, pr := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
			if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != name {
				bad("%s %s: the %s probe must be an HTTP GET of %s", w.kind, w.name, map[string]string{"/readyz": "readiness", "/healthz": "liveness"}[name], name)
				continue
			}
			if p, _ := containerPort(w.tmpl, pr.HTTPGet.Port); strconv.Itoa(int(p)) != httpPort {
				bad("%s %s: the %s probe uses port %d, MAILCLUSTER_HTTP_LISTEN is %q", w.kind, w.name, name, p, envs[role]["MAILCLUSTER_HTTP_LISTEN"])
			}
		}
	}

	// Addresses of in-cluster dependencies name Services and their ports.
	// (Hosts that are no Service here are outside this set of objects.)
	if fenv, benv := envs[roleFrontend], envs[roleBackend]; fenv != nil && benv != nil {
		for _, u := range strings.Split(fenv["MAILCLUSTER_LDAP_URLS"], ",") {
			if pu, err := url.Parse(strings.TrimSpace(u)); err == nil {
				port := pu.Port()
				if port == "" {
					port = map[string]string{"ldap": "389", "ldaps": "636"}[pu.Scheme]
				}
				errs = append(errs, checkServiceAddr(o, "frontend MAILCLUSTER_LDAP_URLS", pu.Hostname(), port)...)
			}
		}
		if host, port, err := net.SplitHostPort(benv["MAILCLUSTER_S3_ENDPOINT"]); err == nil {
			errs = append(errs, checkServiceAddr(o, "backend MAILCLUSTER_S3_ENDPOINT", host, port)...)
		}
		if u, err := url.Parse(benv["MAILCLUSTER_POSTGRES_DSN"]); err == nil && u.Host != "" {
			port := u.Port()
			if port == "" {
				port = "5432"
			}
			errs = append(errs, checkServiceAddr(o, "backend MAILCLUSTER_POSTGRES_DSN", u.Hostname(), port)...)
		}
	}

	// Frontends name every backend pod by its stable DNS name.
	if fenv, benv := envs[roleFrontend], envs[roleBackend]; fenv != nil && benv != nil {
		bs, err := parseBackends(fenv["MAILCLUSTER_BACKENDS"])
		if err != nil {
			bad("frontend: MAILCLUSTER_BACKENDS: %v", err)
		}
		grpcPort := listenPort(benv["MAILCLUSTER_GRPC_LISTEN"])
		n := int(ptrOr(be.Spec.Replicas, 1))
		if len(bs) != n {
			bad("frontend: MAILCLUSTER_BACKENDS lists %d backends, the StatefulSet runs %d", len(bs), n)
		}
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("%s-%d", be.Name, i)
			want := fmt.Sprintf("%s.%s:%s", name, be.Spec.ServiceName, grpcPort)
			if got := bs[name]; got != want {
				bad("frontend: MAILCLUSTER_BACKENDS: %s=%q, want %s=%s", name, got, name, want)
			}
		}
		ft, bt := fenv["MAILCLUSTER_BACKEND_TOKEN"], benv["MAILCLUSTER_GRPC_TOKEN"]
		if ft != bt && !strings.HasPrefix(ft, "placeholder-") && !strings.HasPrefix(bt, "placeholder-") {
			bad("frontend MAILCLUSTER_BACKEND_TOKEN differs from backend MAILCLUSTER_GRPC_TOKEN")
		}
		errs = append(errs, checkFrontendPorts("frontend", fenv)...)
		for k := range fenv {
			if strings.HasPrefix(k, "MAILCLUSTER_POSTGRES") || strings.HasPrefix(k, "MAILCLUSTER_S3_") {
				bad("frontend: holds storage setting %s: frontends never do", k)
			}
		}
	}
	return errs
}

// checkServiceAddr checks that host:port, when host names a Service of the
// set (short name or name.namespace...), is one of its ports.
func checkServiceAddr(o k8sObjects, what, host, port string) []error {
	name, _, _ := strings.Cut(host, ".")
	svc, ok := o.services[name]
	if !ok || (host != name && !strings.HasPrefix(host, name+"."+svc.Namespace)) {
		return nil
	}
	for _, sp := range svc.Spec.Ports {
		if strconv.Itoa(int(sp.Port)) == port {
			return nil
		}
	}
	return []error{fmt.Errorf("%s: Service %s has no port %s", what, name, port)}
}

// admits tells whether a NetworkPolicy lets pods with labels in on the
// named port.
func admits(np *networkingv1.NetworkPolicy, labels map[string]string, port string) bool {
	for _, rule := range np.Spec.Ingress {
		fromOK := len(rule.From) == 0
		for _, from := range rule.From {
			if from.PodSelector != nil && from.NamespaceSelector == nil && selects(from.PodSelector.MatchLabels, labels) {
				fromOK = true
			}
		}
		portOK := len(rule.Ports) == 0
		for _, p := range rule.Ports {
			if p.Port != nil && p.Port.Type == intstr.String && p.Port.StrVal == port {
				portOK = true
			}
		}
		if fromOK && portOK {
			return true
		}
	}
	return false
}

// externalValue stands for a value that only exists in the cluster.
func externalValue(name string) string {
	if name == "MAILCLUSTER_POSTGRES_DSN" {
		return "postgresql://mailcluster:external@mailcluster-db-rw:5432/mailcluster"
	}
	return "external-" + strings.ToLower(name)
}

// secretData returns a Secret's values; an empty value (a template the
// operator fills in) stands in as a placeholder so the configuration can
// be validated.
func secretData(s *corev1.Secret) map[string]string {
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	for k, v := range s.StringData {
		out[k] = v
	}
	for k, v := range out {
		if v == "" {
			out[k] = "placeholder-" + s.Name + "-" + strings.ToLower(k)
		}
	}
	return out
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// containerPort resolves a (named or numbered) port of a pod template.
func containerPort(tmpl *corev1.PodTemplateSpec, port intstr.IntOrString) (int32, bool) {
	for _, c := range tmpl.Spec.Containers {
		for _, cp := range c.Ports {
			if (port.Type == intstr.String && cp.Name == port.StrVal) || (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	base := filepath.Join(root, "deploy/kubernetes")
	// Every file a kustomization reads exists and decodes.
	used := map[string]bool{}
	for _, dir := range kustomizationDirs(t, base) {
		files, err := loadKustomization(dir, map[string]bool{})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			abs, _ := filepath.Abs(f)
			used[abs] = true
		}
	}
	// Every manifest in the tree is used by some kustomization or is a
	// custom resource documented in extras/.
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		abs, _ := filepath.Abs(p)
		if used[abs] {
			return nil
		}
		if strings.Contains(p, string(filepath.Separator)+"extras"+string(filepath.Separator)) {
			return nil // custom resources: TestKubernetesExtras
		}
		t.Errorf("%s is used by no kustomization", p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The base is checked even where kubectl is missing, rendered by the
// test's own reduced Kustomize.
func TestKubernetesBaseWithoutKubectl(t *testing.T) {
	objs, err := renderSimple(filepath.Join(root, "deploy/kubernetes/base"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := checkKubernetes(t, objs); len(errs) > 0 {
		t.Fatalf("base:%s", joinErrs(errs))
	}
}

func TestKubernetesRendered(t *testing.T) {
	needKubectl(t)
	tmp := t.TempDir()
	copyTree(t, filepath.Join(root, "deploy/kubernetes"), tmp)
	for _, dir := range kustomizationDirs(t, tmp) {
		rel, _ := filepath.Rel(tmp, dir)
		t.Run(rel, func(t *testing.T) {
			objs, err := render(dir)
			if err != nil {
				t.Fatal(err)
			}
			if errs := checkKubernetes(t, objs); len(errs) > 0 {
				t.Fatalf("%s:%s", rel, joinErrs(errs))
			}
		})
	}
}

// TestKubernetesProductionOverlay checks what the production overlay
// promises on top of the base.
func TestKubernetesProductionOverlay(t *testing.T) {
	needKubectl(t)
	tmp := t.TempDir()
	copyTree(t, filepath.Join(root, "deploy/kubernetes"), tmp)
	objs, err := render(filepath.Join(tmp, "overlays/production"))
	if err != nil {
		t.Fatal(err)
	}
	o, _ := index(objs)
	for _, obj := range objs {
		if m, ok := obj.(interface{ GetNamespace() string }); ok && m.GetNamespace() != "mailcluster" {
			t.Errorf("%T in namespace %q, want mailcluster", obj, m.GetNamespace())
		}
	}
	var fcm *corev1.ConfigMap
	for _, c := range o.deployments["frontend"].Spec.Template.Spec.Containers[0].EnvFrom {
		if c.ConfigMapRef != nil {
			fcm = o.configMaps[c.ConfigMapRef.Name]
		}
	}
	if fcm == nil || fcm.Data["MAILCLUSTER_PROXY_PROTOCOL"] == "" || fcm.Data["MAILCLUSTER_PROXY_NETWORKS"] == "" {
		t.Error("production: the frontends do not accept the PROXY protocol")
	}
	if ptrOr(o.statefulSets["backend"].Spec.Replicas, 1) != 3 {
		t.Error("production: want 3 backends")
	}
}

// TestKubernetesDemoOverlay checks that the demo's in-cluster services fit
// the mailcluster settings: the LDAP, S3 and PostgreSQL addresses are its
// Services, and the credentials on both sides agree.
func TestKubernetesDemoOverlay(t *testing.T) {
	needKubectl(t)
	objs, err := render(filepath.Join(root, "deploy/kubernetes/overlays/demo"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := demoConsistency(objs); len(errs) > 0 {
		t.Fatalf("demo:%s", joinErrs(errs))
	}
}

func demoConsistency(objs []runtime.Object) []error {
	o, errs := index(objs)
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	envOf := func(kind, name string) map[string]string {
		var tmpl *corev1.PodTemplateSpec
		if kind == "Deployment" {
			if d, ok := o.deployments[name]; ok {
				tmpl = &d.Spec.Template
			}
		} else if s, ok := o.statefulSets[name]; ok {
			tmpl = &s.Spec.Template
		}
		env := map[string]string{}
		if tmpl == nil {
			bad("%s %s is missing", kind, name)
			return env
		}
		for _, ef := range tmpl.Spec.Containers[0].EnvFrom {
			if ef.ConfigMapRef != nil {
				if cm, ok := o.configMaps[ef.ConfigMapRef.Name]; ok {
					maps.Copy(env, cm.Data)
				}
			}
			if ef.SecretRef != nil {
				if s, ok := o.secrets[ef.SecretRef.Name]; ok {
					for k, v := range s.Data {
						env[k] = string(v)
					}
				}
			}
		}
		for _, e := range tmpl.Spec.Containers[0].Env {
			if e.ValueFrom == nil {
				env[e.Name] = e.Value
			}
		}
		return env
	}
	fe, be := envOf("Deployment", "frontend"), envOf("StatefulSet", "backend")
	pg, s3 := envOf("StatefulSet", "postgres"), envOf("StatefulSet", "s3")
	envOf("StatefulSet", "ldap")
	for _, svc := range []string{"ldap", "postgres", "s3"} {
		if _, ok := o.services[svc]; !ok {
			bad("Service %s is missing", svc)
		}
	}
	if u, err := url.Parse(be["MAILCLUSTER_POSTGRES_DSN"]); err != nil {
		bad("backend DSN: %v", err)
	} else {
		pw, _ := u.User.Password()
		if u.Hostname() != "postgres" || u.User.Username() != pg["POSTGRES_USER"] || pw != pg["POSTGRES_PASSWORD"] || strings.TrimPrefix(u.Path, "/") != pg["POSTGRES_DB"] {
			bad("backend MAILCLUSTER_POSTGRES_DSN does not fit the demo PostgreSQL (host postgres, its user, password and database)")
		}
	}
	if h, _, _ := net.SplitHostPort(be["MAILCLUSTER_S3_ENDPOINT"]); h != "s3" || be["MAILCLUSTER_S3_ACCESS_KEY"] != s3["ROOT_ACCESS_KEY"] || be["MAILCLUSTER_S3_SECRET_KEY"] != s3["ROOT_SECRET_KEY"] {
		bad("backend S3 settings do not fit the demo S3 server (endpoint s3, its root keys)")
	}
	if be["MAILCLUSTER_S3_CREATE_BUCKET"] != "true" {
		bad("backend: the demo S3 server starts empty: MAILCLUSTER_S3_CREATE_BUCKET must be true")
	}
	if !strings.HasPrefix(fe["MAILCLUSTER_LDAP_URLS"], "ldap://ldap:") {
		bad("frontend MAILCLUSTER_LDAP_URLS does not name the demo LDAP Service")
	}
	if fe["MAILCLUSTER_BACKEND_TOKEN"] == "" || fe["MAILCLUSTER_BACKEND_TOKEN"] != be["MAILCLUSTER_GRPC_TOKEN"] {
		bad("frontend MAILCLUSTER_BACKEND_TOKEN does not equal backend MAILCLUSTER_GRPC_TOKEN")
	}
	if d, ok := o.deployments["frontend"]; ok {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == "tls" && (v.Secret != nil || v.EmptyDir == nil) {
				bad("frontend: the demo's tls volume must be the emptyDir its init container fills")
			}
		}
		if len(d.Spec.Template.Spec.InitContainers) == 0 {
			bad("frontend: no init container writes the demo certificate")
		}
	}
	return errs
}

// The files under extras/ are custom resources (not in client-go's scheme):
// check they parse and name what the overlays expect.
func TestKubernetesExtras(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "deploy/kubernetes/extras/cloudnativepg-cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cluster struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Spec struct {
			Instances int    `json:"instances"`
			ImageName string `json:"imageName"`
			Bootstrap struct {
				InitDB struct {
					Database string `json:"database"`
					Owner    string `json:"owner"`
				} `json:"initdb"`
			} `json:"bootstrap"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &cluster); err != nil {
		t.Fatal(err)
	}
	if cluster.APIVersion != "postgresql.cnpg.io/v1" || cluster.Kind != "Cluster" {
		t.Errorf("cloudnativepg-cluster.yaml: %s %s, want postgresql.cnpg.io/v1 Cluster", cluster.APIVersion, cluster.Kind)
	}
	// CloudNativePG names the app Secret <cluster>-app.
	if _, ok := externalSecrets[cluster.Metadata.Name+"-app"]; !ok {
		t.Errorf("the Cluster %s writes the Secret %s-app, which the manifests do not use", cluster.Metadata.Name, cluster.Metadata.Name)
	}
	if cluster.Spec.Instances < 2 || cluster.Spec.Bootstrap.InitDB.Database == "" {
		t.Error("cloudnativepg-cluster.yaml: want at least 2 instances and a database")
	}
	if err := imagePinned(cluster.Spec.ImageName); err != nil {
		t.Error(err)
	}
}

func TestKubernetesRejectsBrokenFiles(t *testing.T) {
	kube := filepath.Join(root, "deploy/kubernetes")
	cases := []struct {
		name, file, old, new string
		render               bool // needs rendering to be caught
	}{
		{"unknown field", "base/backend-statefulset.yaml", "  replicas: 2\n", "  replicas: 2\n  replicaz: 3\n", false},
		{"wrong type", "base/backend-statefulset.yaml", "  replicas: 2\n", "  replicas: two\n", false},
		{"wrong apiVersion", "base/frontend-deployment.yaml", "apiVersion: apps/v1", "apiVersion: apps/v1beta9", false},
		{"old apiVersion", "base/frontend-pdb.yaml", "apiVersion: policy/v1", "apiVersion: policy/v1beta1", false},
		{"unknown field in a patch", "overlays/production/frontend-hpa-patch.yaml", "  minReplicas: 3", "  minReplica: 3", false},
		{"missing resource", "base/kustomization.yaml", "  - frontend-pdb.yaml", "  - frontend-pdbs.yaml", false},
		{"missing generator file", "base/kustomization.yaml", "envs: [config/backend.env]", "envs: [config/backends.env]", false},
		{"unknown kustomization field", "overlays/production/kustomization.yaml", "namespace: mailcluster", "namespaces: mailcluster", false},
		{"unknown setting", "base/config/frontend.env", "MAILCLUSTER_SMTP_LISTEN=:25", "MAILCLUSTER_SMTP_LISTENER=:25", true},
		{"invalid setting", "base/config/backend.env", "MAILCLUSTER_BLOB_DRIVER=s3", "MAILCLUSTER_BLOB_DRIVER=nfs", true},
		{"service port not exposed", "base/frontend-service.yaml", "      targetPort: pop3s", "      targetPort: pop3ss", true},
		{"traffic policy", "base/frontend-service.yaml", "  externalTrafficPolicy: Local\n", "  externalTrafficPolicy: Cluster\n", true},
		{"HPA target", "base/frontend-hpa.yaml", "    name: frontend\n", "    name: frontends\n", true},
		{"backends out of step with replicas", "overlays/production/kustomization.yaml", "    count: 3", "    count: 4", true},
		{"POP3S moved", "base/config/frontend.env", "MAILCLUSTER_POP3S_LISTEN=:995", "MAILCLUSTER_POP3S_LISTEN=:9995", true},
		{"frontend probe on the wrong path", "base/frontend-deployment.yaml", "              path: /readyz", "              path: /ready", true},
		{"probe missing", "base/backend-statefulset.yaml", "          livenessProbe:\n", "          startupProbe:\n", true},
		{"PDB selects nothing", "base/backend-pdb.yaml", "      app.kubernetes.io/name: mailcluster-backend", "      app.kubernetes.io/name: mailcluster-backends", true},
		{"missing ConfigMap", "base/frontend-deployment.yaml", "                name: mailcluster-frontend\n            - secretRef:", "                name: mailcluster-frontends\n            - secretRef:", true},
		{"unpinned image", "overlays/production/kustomization.yaml", "    newTag: \"1.0.0\"", "    newTag: latest", true},
		{"no resources", "base/frontend-deployment.yaml", "              memory: 512Mi\n", "              cpu: \"1\"\n", true},
		{"network policy shuts out the frontends", "base/backend-networkpolicy.yaml", "              app.kubernetes.io/name: mailcluster-frontend", "              app.kubernetes.io/name: mailcluster-frontends", true},
		{"replicas fixed under an autoscaler", "base/frontend-deployment.yaml", "  revisionHistoryLimit: 5\n", "  replicas: 2\n  revisionHistoryLimit: 5\n", true},
		{"demo DSN password", "overlays/demo/secrets/postgres.env", "POSTGRES_PASSWORD=demo-postgres-password", "POSTGRES_PASSWORD=other", true},
		{"demo S3 port", "overlays/demo/s3.yaml", "    - name: s3\n      port: 7070", "    - name: s3\n      port: 9000", true},
		{"capability dropped", "base/frontend-deployment.yaml", "              add: [NET_BIND_SERVICE]", "              add: []", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, noKubectl := exec.LookPath("kubectl")
			if c.render && noKubectl != nil && !strings.HasPrefix(c.file, "base/") {
				needKubectl(t)
			}
			tmp := t.TempDir()
			copyTree(t, kube, tmp)
			p := filepath.Join(tmp, c.file)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(mutate(t, string(data), c.old, c.new)), 0o644); err != nil {
				t.Fatal(err)
			}
			var problems []error
			for _, dir := range kustomizationDirs(t, tmp) {
				if _, err := loadKustomization(dir, map[string]bool{}); err != nil {
					problems = append(problems, err)
				}
			}
			if len(problems) == 0 && c.render && noKubectl != nil {
				objs, err := renderSimple(filepath.Join(tmp, "base"))
				if err != nil {
					problems = append(problems, err)
				} else {
					problems = append(problems, checkKubernetes(t, objs)...)
				}
			} else if len(problems) == 0 && c.render {
				for _, dir := range kustomizationDirs(t, tmp) {
					objs, err := render(dir)
					if err != nil {
						problems = append(problems, err)
						continue
					}
					problems = append(problems, checkKubernetes(t, objs)...)
					if filepath.Base(dir) == "demo" {
						problems = append(problems, demoConsistency(objs)...)
					}
				}
			}
			if len(problems) == 0 {
				t.Fatal("the broken files were accepted")
			}
			if !c.render && len(problems) > 0 {
				t.Logf("rejected without rendering:%s", joinErrs(problems))
				return
			}
			t.Logf("rejected:%s", joinErrs(problems))
		})
	}
}
