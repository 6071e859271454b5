// Package profiler mounts Go's runtime profiler (net/http/pprof) on a
// service's private HTTP listener when an operator turns it on.
package profiler

import (
	"net/http"
	"net/http/pprof"
)

// Register serves the profiles under /debug/pprof/ on mux. It is never on
// by default: profiles show stack traces, so the listener must be
// reachable only by operators. The command line is not served
// (/debug/pprof/cmdline answers 404): flags may carry secrets.
func Register(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", http.NotFound)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
