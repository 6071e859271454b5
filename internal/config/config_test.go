package config

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Listen  string        `name:"listen" help:"address"`
	Size    int64         `name:"max-size" help:"bytes"`
	Debug   bool          `name:"debug" help:"debug"`
	Timeout time.Duration `name:"timeout" help:"timeout"`
	Peers   []string      `name:"peers" help:"peers"`
	Inner   struct {
		N uint32 `name:"n" help:"n"`
	}
	skipped string
}

func TestLoadPrecedence(t *testing.T) {
	c := sample{Listen: ":1", Size: 10, Timeout: time.Second}
	env := map[string]string{"MAILCLUSTER_LISTEN": ":2", "MAILCLUSTER_MAX_SIZE": "4K", "MAILCLUSTER_N": "7"}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	err := Load(&c, fs, []string{"-listen", ":3", "-debug", "-timeout", "2m", "-peers", "a, b,"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":3" || c.Size != 4096 || !c.Debug || c.Timeout != 2*time.Minute || c.Inner.N != 7 {
		t.Fatalf("got %+v", c)
	}
	if len(c.Peers) != 2 || c.Peers[1] != "b" {
		t.Fatalf("peers %q", c.Peers)
	}
}

func TestLoadErrorsNameTheSetting(t *testing.T) {
	c := sample{}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	err := Load(&c, fs, nil, func(k string) string {
		if k == "MAILCLUSTER_TIMEOUT" {
			return "soon"
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "MAILCLUSTER_TIMEOUT") {
		t.Fatalf("err = %v", err)
	}
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := Load(&c, fs, []string{"-max-size", "lots"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "max-size") {
		t.Fatalf("err = %v", err)
	}
}

func TestDescribe(t *testing.T) {
	c := sample{Listen: ":1", Peers: []string{"x", "y"}}
	d := Describe(&c)
	if len(d) != 6 {
		t.Fatalf("got %d settings", len(d))
	}
	for _, s := range d {
		if s.Flag == "peers" && s.Default != "x,y" {
			t.Fatalf("peers default %q", s.Default)
		}
		if s.Flag == "listen" && s.Env != "MAILCLUSTER_LISTEN" {
			t.Fatalf("env %q", s.Env)
		}
	}
}
