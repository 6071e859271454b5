package blob

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// FSConfig configures a file-system Store.
type FSConfig struct {
	Root string // directory holding the objects; created (0750) if missing
}

// fsTempPrefix starts the names of files being written. Keys never have a
// component starting with ".", so these never collide with objects and List
// skips them. A crash can leave such files behind; they are safe to delete
// when older than any Put in progress.
const fsTempPrefix = ".tmp-"

type fsStore struct {
	root string // absolute, cleaned
}

// NewFS returns a Store keeping each object in a file under cfg.Root, for
// single-node installs and the local dev cluster: key "a/b/c" is the file
// Root/a/b/c. Put writes a temporary file in the target directory, fsyncs
// it, renames it over the key and fsyncs the directory (and every directory
// it had to create), so an acknowledged object survives a crash and a reader
// sees either the old or the new object. Delete removes directories it
// leaves empty. Because keys are paths, a key cannot also be a directory of
// another key: Put("a/b") fails while "a" exists, and vice versa.
//
// Keys with "..", absolute paths, NUL or other control characters are
// rejected by ValidKey, so no key names a file outside Root.
func NewFS(cfg FSConfig) (Store, error) {
	if cfg.Root == "" {
		return nil, errors.New("blob: fs: Root is empty")
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("blob: fs: Root %q: %w", cfg.Root, err)
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("blob: fs: creating Root: %w", err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("blob: fs: Root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("blob: fs: Root %q is not a directory", root)
	}
	s := &fsStore{root: root}
	if err := s.Ping(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *fsStore) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key))
}

func (s *fsStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkPut(ctx, "fs", key, size); err != nil {
		return err
	}
	dst := s.path(key)
	dir := filepath.Dir(dst)
	var tmp *os.File
	var err error
	// A concurrent Delete may remove an empty directory between mkdirAll and
	// CreateTemp; try again then.
	for attempt := 1; ; attempt++ {
		err = s.mkdirAll(dir)
		if err == nil {
			tmp, err = os.CreateTemp(dir, fsTempPrefix+"*")
			if err == nil {
				break
			}
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == 10 {
			return fmt.Errorf("blob: fs put %q: %w", key, s.conflict(key, err))
		}
	}
	tmpName := tmp.Name()
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	pr := &putReader{ctx: ctx, r: r, size: size}
	if _, err := io.Copy(tmp, pr); err != nil {
		return fmt.Errorf("blob: fs put %q: %w", key, err)
	}
	if err := tmp.Chmod(0o640); err != nil {
		return fmt.Errorf("blob: fs put %q: %w", key, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("blob: fs put %q: fsync: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("blob: fs put %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: fs put %q: %w", key, err)
	}
	if err := os.Rename(tmpName, dst); err != nil {
		return fmt.Errorf("blob: fs put %q: %w", key, s.conflict(key, err))
	}
	committed = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("blob: fs put %q: fsync directory: %w", key, err)
	}
	return nil
}

// conflict explains the errors that arise when a key collides with another
// key's directory.
func (s *fsStore) conflict(key string, err error) error {
	if errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("a prefix of key %q is itself a key: %w", key, err)
	}
	if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
		return fmt.Errorf("key %q is a directory of other keys: %w", key, err)
	}
	return err
}

// mkdirAll creates dir and its missing parents below the root, fsyncing
// the parent of each directory it creates so that the new entries are
// durable.
func (s *fsStore) mkdirAll(dir string) error {
	if dir == s.root {
		return nil
	}
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if err := s.mkdirAll(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		if errors.Is(err, fs.ErrExist) {
			if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
				return nil // created concurrently
			}
		}
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *fsStore) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := checkGet(ctx, "fs", key, offset); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("blob: fs get %q: %w", key, ErrNotFound)
		}
		return nil, fmt.Errorf("blob: fs get %q: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob: fs get %q: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("blob: fs get %q: %w", key, ErrNotFound)
	}
	n := fi.Size() - offset
	if n < 0 {
		n = 0
	}
	if length >= 0 && length < n {
		n = length
	}
	return &fsReader{ctx: ctx, f: f, r: io.NewSectionReader(f, offset, n)}, nil
}

type fsReader struct {
	ctx context.Context
	f   *os.File
	r   io.Reader
}

func (r *fsReader) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(b)
}

func (r *fsReader) Close() error { return r.f.Close() }

func (s *fsStore) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: fs delete %q: %w", key, err)
	}
	p := s.path(key)
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return nil // not an object: a directory of other keys
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("blob: fs delete %q: %w", key, err)
	}
	dir := filepath.Dir(p)
	// A concurrent Delete may have pruned dir already: it was empty, so
	// this removal is done.
	if err := syncDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: fs delete %q: fsync directory: %w", key, err)
	}
	// Remove the directories this leaves empty (best effort: a concurrent
	// Put into one of them makes Remove fail, which is fine).
	for dir != s.root && strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			break
		}
		dir = filepath.Dir(dir)
	}
	return nil
}

func (s *fsStore) List(ctx context.Context, prefix string, fn func(key string, modTime time.Time) error) error {
	if err := validPrefix(prefix); err != nil {
		return err
	}
	if err := s.walk(ctx, s.root, "", prefix, fn); err != nil {
		return err
	}
	return nil
}

// walk lists the objects in directory dir, whose keys start with keyPrefix
// ("" or ending in "/"), in lexical key order: a subdirectory d sorts as
// "d/", since all its keys start with that.
func (s *fsStore) walk(ctx context.Context, dir, keyPrefix, prefix string, fn func(string, time.Time) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: fs list: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if keyPrefix != "" && errors.Is(err, fs.ErrNotExist) {
			return nil // removed concurrently
		}
		return fmt.Errorf("blob: fs list: %w", err)
	}
	type entry struct {
		sortKey string
		e       fs.DirEntry
	}
	es := make([]entry, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue // temporary file, or not ours
		}
		sk := keyPrefix + name
		if e.IsDir() {
			sk += "/"
			if !strings.HasPrefix(sk, prefix) && !strings.HasPrefix(prefix, sk) {
				continue
			}
		} else if !e.Type().IsRegular() || !strings.HasPrefix(sk, prefix) {
			continue
		}
		es = append(es, entry{sk, e})
	}
	slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(a.sortKey, b.sortKey) })
	for _, x := range es {
		if x.e.IsDir() {
			if err := s.walk(ctx, filepath.Join(dir, x.e.Name()), x.sortKey, prefix, fn); err != nil {
				return err
			}
			continue
		}
		fi, err := x.e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted concurrently
			}
			return fmt.Errorf("blob: fs list: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("blob: fs list: %w", err)
		}
		if err := fn(x.sortKey, fi.ModTime()); err != nil {
			return err
		}
	}
	return nil
}

// Ping checks that Root is a writable directory by creating and removing a
// temporary file in it.
func (s *fsStore) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: fs ping: %w", err)
	}
	f, err := os.CreateTemp(s.root, fsTempPrefix+"ping-*")
	if err != nil {
		return fmt.Errorf("blob: fs ping: %w", err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("blob: fs ping: %w", err)
	}
	return nil
}
