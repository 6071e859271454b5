// Package config fills typed configuration structs from command-line flags
// and MAILCLUSTER_* environment variables.
//
// A field takes part when it has a `name` tag (the flag name, lower case with
// dashes) and a `help` tag. The value already in the struct is the default;
// an environment variable MAILCLUSTER_<NAME> (dashes as underscores, upper
// case) overrides it, and a flag overrides both. Supported field types:
// string, bool, int, int64, uint32, float64, time.Duration and []string
// (comma-separated). Nested structs are walked; their fields' names are used
// as they are (names must be unique across the whole struct).
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Setting describes one configuration setting, for help texts and docs.
type Setting struct {
	Flag    string // e.g. "grpc-listen"
	Env     string // e.g. "MAILCLUSTER_GRPC_LISTEN"
	Default string
	Help    string
}

// EnvName returns the environment variable for a flag name.
func EnvName(flagName string) string {
	return "MAILCLUSTER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

type field struct {
	name, help string
	v          reflect.Value
}

func fields(cfg any) ([]field, error) {
	rv := reflect.ValueOf(cfg)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil, errors.New("config: want a pointer to a struct")
	}
	var out []field
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			name := sf.Tag.Get("name")
			if name == "" {
				if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeOf(time.Time{}) {
					walk(v.Field(i))
				}
				continue
			}
			out = append(out, field{name: name, help: sf.Tag.Get("help"), v: v.Field(i)})
		}
	}
	walk(rv.Elem())
	seen := map[string]bool{}
	for _, f := range out {
		if seen[f.name] {
			return nil, fmt.Errorf("config: duplicate setting %q", f.name)
		}
		seen[f.name] = true
	}
	return out, nil
}

// Describe lists the settings of cfg with their current values as defaults,
// sorted by name.
func Describe(cfg any) []Setting {
	fs, err := fields(cfg)
	if err != nil {
		panic(err)
	}
	out := make([]Setting, 0, len(fs))
	for _, f := range fs {
		out = append(out, Setting{Flag: f.name, Env: EnvName(f.name), Default: format(f.v), Help: f.help})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Flag < out[j].Flag })
	return out
}

// Load applies environment variables (from getenv; nil means os.Getenv) and
// then args to cfg. Errors name the setting and what is wrong with it.
func Load(cfg any, fset *flag.FlagSet, args []string, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	fs, err := fields(cfg)
	if err != nil {
		return err
	}
	for _, f := range fs {
		env := EnvName(f.name)
		if s := getenv(env); s != "" {
			if err := set(f.v, s); err != nil {
				return fmt.Errorf("%s: %v", env, err)
			}
		}
	}
	for _, f := range fs {
		fset.Var(&flagValue{f.v}, f.name, f.help+" (env "+EnvName(f.name)+")")
	}
	return fset.Parse(args)
}

type flagValue struct{ v reflect.Value }

func (f *flagValue) String() string {
	if !f.v.IsValid() {
		return ""
	}
	return format(f.v)
}
func (f *flagValue) Set(s string) error { return set(f.v, s) }
func (f *flagValue) IsBoolFlag() bool   { return f.v.IsValid() && f.v.Kind() == reflect.Bool }

var durationType = reflect.TypeOf(time.Duration(0))

func set(v reflect.Value, s string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want e.g. 30s, 5m)", s)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid boolean %q (want true or false)", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := parseSize(s)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Uint32:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("invalid number %q", s)
		}
		v.SetUint(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("invalid number %q", s)
		}
		v.SetFloat(n)
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

// parseSize parses an integer with an optional K, M or G suffix (powers of
// 1024), so that sizes read naturally: 50M, 4K.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSpace(s)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult, t = 1<<10, t[:n-1]
		case 'm', 'M':
			mult, t = 1<<20, t[:n-1]
		case 'g', 'G':
			mult, t = 1<<30, t[:n-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid number %q", s)
	}
	return n * mult, nil
}

func format(v reflect.Value) string {
	if v.Type() == durationType {
		return time.Duration(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Slice:
		var parts []string
		for i := 0; i < v.Len(); i++ {
			parts = append(parts, v.Index(i).String())
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(v.Interface())
	}
}
