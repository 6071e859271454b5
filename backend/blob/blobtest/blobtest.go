// Package blobtest is the conformance suite every blob.Store implementation
// must pass. It lives in a non-test file so that any package's tests can run
// it against the store they build:
//
//	func TestStore(t *testing.T) {
//		blobtest.Run(t, func(t *testing.T) blob.Store { ... a fresh, empty store ... })
//	}
package blobtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"mailcluster/backend/blob"
)

// LargeSize is the size of the large bodies the suite stores: above 5 MiB,
// S3's minimum part size, so that a store configured with that part size
// uploads them in more than one part.
const LargeSize = 5<<20 + 123457

// Run runs the conformance suite. newStore must return a fresh, empty store
// for each call (for example a new directory or bucket); it is called once
// per subtest, and the store is not closed by the suite.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, blob.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Large", testLarge},
		{"Range", testRange},
		{"NotFound", testNotFound},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"List", testList},
		{"ListStop", testListStop},
		{"Concurrent", testConcurrent},
		{"ConcurrentPutDelete", testConcurrentPutDelete},
		{"CanceledContext", testCanceled},
		{"ReaderError", testReaderError},
		{"SizeMismatch", testSizeMismatch},
		{"InvalidKeys", testInvalidKeys},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// Data returns n pseudo-random bytes determined by seed.
func Data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// onlyReader hides every method but Read (no WriterTo, Seeker, ReaderAt,
// Len), as a network stream would.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(b []byte) (int, error) { return o.r.Read(b) }

func put(t *testing.T, s blob.Store, key string, data []byte, size int64) {
	t.Helper()
	if err := s.Put(context.Background(), key, onlyReader{bytes.NewReader(data)}, size); err != nil {
		t.Fatalf("Put(%q, %d bytes, size %d): %v", key, len(data), size, err)
	}
}

func get(t *testing.T, s blob.Store, key string, offset, length int64) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key, offset, length)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, offset, length, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): reading: %v", key, offset, length, err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("Get(%q): Close: %v", key, err)
	}
	return b
}

func checkBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		if len(got) < 64 && len(want) < 64 {
			t.Fatalf("%s: got %q, want %q", what, got, want)
		}
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: got %d bytes, want %d; first difference at byte %d", what, len(got), len(want), i)
	}
}

func mustNotExist(t *testing.T, s blob.Store, key string) {
	t.Helper()
	rc, err := s.Get(context.Background(), key, 0, -1)
	if err == nil {
		b, _ := io.ReadAll(rc)
		rc.Close()
		t.Fatalf("Get(%q) after a failed Put: found %d bytes, want ErrNotFound", key, len(b))
	}
	if !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get(%q): %v, want ErrNotFound", key, err)
	}
	keys := listKeys(t, s, key)
	if slices.Contains(keys, key) {
		t.Fatalf("List(%q) reports %q after a failed Put", key, key)
	}
}

type listed struct {
	key string
	mod time.Time
}

func list(t *testing.T, s blob.Store, prefix string) []listed {
	t.Helper()
	var out []listed
	err := s.List(context.Background(), prefix, func(key string, mod time.Time) error {
		out = append(out, listed{key, mod})
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}

func listKeys(t *testing.T, s blob.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for _, l := range list(t, s, prefix) {
		keys = append(keys, l.key)
	}
	return keys
}

func testRoundTrip(t *testing.T, s blob.Store) {
	cases := []struct {
		key  string
		data []byte
		size int64 // -2: len(data)
	}{
		{"empty-known", nil, 0},
		{"empty-unknown", nil, -1},
		{"small-known", []byte("hello, world\r\n"), -2},
		{"small-unknown", []byte("hello, world\r\n"), -1},
		{"b/2026/11/25/nested", Data(1, 4096), -2},
		{"odd chars/ü ñ/x+y=z@%&?#;,!$'()~*[]{}", Data(2, 100), -1},
		{"k64", Data(3, 64<<10), -1},
	}
	for _, c := range cases {
		size := c.size
		if size == -2 {
			size = int64(len(c.data))
		}
		put(t, s, c.key, c.data, size)
	}
	for _, c := range cases {
		checkBytes(t, "Get("+c.key+")", get(t, s, c.key, 0, -1), c.data)
	}
}

func testLarge(t *testing.T, s blob.Store) {
	data := Data(10, LargeSize)
	put(t, s, "large/unknown", data, -1)
	put(t, s, "large/known", data, int64(len(data)))
	checkBytes(t, "Get(large/unknown)", get(t, s, "large/unknown", 0, -1), data)
	checkBytes(t, "Get(large/known)", get(t, s, "large/known", 0, -1), data)
	// A range across the 5 MiB part boundary.
	off := int64(5<<20 - 1000)
	checkBytes(t, "Get(large/unknown, across part boundary)", get(t, s, "large/unknown", off, 2000), data[off:off+2000])
}

func testRange(t *testing.T, s blob.Store) {
	data := Data(20, 100)
	put(t, s, "r", data, int64(len(data)))
	put(t, s, "empty", nil, 0)
	cases := []struct {
		offset, length int64
		want           []byte
	}{
		{0, -1, data},
		{0, 100, data},
		{10, 20, data[10:30]},    // middle
		{10, -1, data[10:]},      // to the end
		{90, 50, data[90:]},      // past the end: what exists
		{99, 1, data[99:]},       // last byte
		{0, 1, data[:1]},         // first byte
		{100, -1, nil},           // at the end
		{100, 10, nil},           // at the end, with length
		{1000, -1, nil},          // beyond the end
		{1000, 5, nil},           // beyond the end, with length
		{50, 0, nil},             // zero length
		{0, 1 << 40, data},       // huge length
		{37, 63, data[37:100]},   // exactly to the end
		{37, 64, data[37:100]},   // one past the end
		{1, 98, data[1:99]},      // all but the ends
		{0, 0, nil},              // zero length at 0
		{99, -1, data[99:]},      // last byte, to the end
		{98, 1 << 40, data[98:]}, // huge length near the end
		{5, 1<<63 - 1, data[5:]}, // offset+length overflows
	}
	for _, c := range cases {
		checkBytes(t, fmt.Sprintf("Get(r, %d, %d)", c.offset, c.length), get(t, s, "r", c.offset, c.length), c.want)
	}
	for _, c := range [][2]int64{{0, -1}, {0, 10}, {5, -1}, {5, 5}, {0, 0}} {
		checkBytes(t, fmt.Sprintf("Get(empty, %d, %d)", c[0], c[1]), get(t, s, "empty", c[0], c[1]), nil)
	}
	if rc, err := s.Get(context.Background(), "r", -1, 10); err == nil {
		rc.Close()
		t.Fatalf("Get with offset -1: no error")
	}
}

func testNotFound(t *testing.T, s blob.Store) {
	put(t, s, "exists", []byte("x"), 1)
	put(t, s, "dir/exists", []byte("x"), 1)
	for _, key := range []string{"missing", "exist", "existsx", "dir/missing", "missing/x", "dir", "exists/x", "dir/exists/x"} {
		for _, r := range [][2]int64{{0, -1}, {0, 10}, {5, -1}, {3, 0}} {
			rc, err := s.Get(context.Background(), key, r[0], r[1])
			if err == nil {
				rc.Close()
				t.Fatalf("Get(%q, %d, %d) of a missing key: no error", key, r[0], r[1])
			}
			if !errors.Is(err, blob.ErrNotFound) {
				t.Fatalf("Get(%q, %d, %d) of a missing key: %v, want ErrNotFound", key, r[0], r[1], err)
			}
			if blob.IsTemporary(err) {
				t.Fatalf("IsTemporary(%v) = true for a missing key", err)
			}
		}
	}
}

func testOverwrite(t *testing.T, s blob.Store) {
	v1 := Data(30, 3000)
	v2 := []byte("second, shorter version")
	put(t, s, "k", v1, -1)
	before := list(t, s, "k")
	put(t, s, "k", v2, int64(len(v2)))
	checkBytes(t, "Get after overwrite", get(t, s, "k", 0, -1), v2)
	after := list(t, s, "k")
	if len(after) != 1 || after[0].key != "k" {
		t.Fatalf("List after overwrite: %v, want exactly k", after)
	}
	if after[0].mod.Before(before[0].mod) {
		t.Fatalf("modification time went back on overwrite: %v then %v", before[0].mod, after[0].mod)
	}
	put(t, s, "k", nil, 0)
	checkBytes(t, "Get after overwrite with empty", get(t, s, "k", 0, -1), nil)
	put(t, s, "k", v1, -1)
	checkBytes(t, "Get after overwrite with larger", get(t, s, "k", 0, -1), v1)
}

func testDelete(t *testing.T, s blob.Store) {
	ctx := context.Background()
	put(t, s, "a/b/c", []byte("c"), 1)
	put(t, s, "a/b/d", []byte("d"), 1)
	for i := range 2 {
		if err := s.Delete(ctx, "a/b/c"); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
		mustNotExist(t, s, "a/b/c")
	}
	checkBytes(t, "sibling after Delete", get(t, s, "a/b/d", 0, -1), []byte("d"))
	for _, key := range []string{"never", "a/never", "a/b", "x/y/z", "a/b/d/under-an-object"} {
		if err := s.Delete(ctx, key); err != nil {
			t.Fatalf("Delete(%q) of a missing key: %v", key, err)
		}
	}
	if err := s.Delete(ctx, "a/b/d"); err != nil {
		t.Fatal(err)
	}
	if keys := listKeys(t, s, ""); len(keys) != 0 {
		t.Fatalf("List after deleting everything: %q", keys)
	}
	// The key can be used again.
	put(t, s, "a/b/c", []byte("again"), -1)
	checkBytes(t, "Get after Delete and Put", get(t, s, "a/b/c", 0, -1), []byte("again"))
}

func testList(t *testing.T, s blob.Store) {
	keys := []string{"a/1", "a/2", "a/10", "a-b", "a0", "ab", "b/x/y", "b/x/z", "b/xy", "c", "b/x-/q", "é", "z/z/z/z"}
	start := time.Now()
	shuffled := slices.Clone(keys)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, k := range shuffled {
		put(t, s, k, []byte(k), -1)
	}
	end := time.Now()
	sorted := slices.Clone(keys)
	slices.Sort(sorted) // byte order
	got := list(t, s, "")
	var gotKeys []string
	for _, l := range got {
		gotKeys = append(gotKeys, l.key)
		// S3 reports modification times in whole seconds; allow a margin
		// for that and for clock granularity.
		if l.mod.IsZero() || l.mod.Before(start.Add(-2*time.Second)) || l.mod.After(end.Add(2*time.Second)) {
			t.Errorf("List: %q modified at %v, want between %v and %v", l.key, l.mod, start, end)
		}
	}
	if !slices.Equal(gotKeys, sorted) {
		t.Fatalf("List(\"\") = %q, want %q", gotKeys, sorted)
	}
	for _, prefix := range []string{"a", "a/", "a/1", "b/x", "b/x/", "b/", "c", "cc", "zz", "é", "z/z/", "b/x-"} {
		var want []string
		for _, k := range sorted {
			if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
				want = append(want, k)
			}
		}
		if got := listKeys(t, s, prefix); !slices.Equal(got, want) {
			t.Fatalf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
	for _, l := range got {
		checkBytes(t, "Get("+l.key+")", get(t, s, l.key, 0, -1), []byte(l.key))
	}
}

func testListStop(t *testing.T, s blob.Store) {
	for i := range 5 {
		put(t, s, fmt.Sprintf("k%d", i), []byte("x"), 1)
	}
	stop := errors.New("stop here")
	var seen []string
	err := s.List(context.Background(), "", func(key string, _ time.Time) error {
		seen = append(seen, key)
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List with fn failing: %v, want fn's error", err)
	}
	if !slices.Equal(seen, []string{"k0", "k1"}) {
		t.Fatalf("List called fn for %q after it failed; want [k0 k1]", seen)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = s.List(ctx, "", func(string, time.Time) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("List with a canceled context: %v, want context.Canceled", err)
	}
	if err := s.List(context.Background(), "../", func(string, time.Time) error { return nil }); !errors.Is(err, blob.ErrInvalidKey) {
		t.Fatalf("List(\"../\"): %v, want ErrInvalidKey", err)
	}
}

func testConcurrent(t *testing.T, s blob.Store) {
	const workers, perWorker = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				key := fmt.Sprintf("c/%d/%d", w, i)
				data := Data(uint64(w*100+i), 1000+w*10000+i*777)
				size := int64(len(data))
				if i%2 == 1 {
					size = -1
				}
				if err := s.Put(context.Background(), key, onlyReader{bytes.NewReader(data)}, size); err != nil {
					errs <- fmt.Errorf("Put(%q): %w", key, err)
					return
				}
				rc, err := s.Get(context.Background(), key, 0, -1)
				if err != nil {
					errs <- fmt.Errorf("Get(%q): %w", key, err)
					return
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					errs <- fmt.Errorf("Get(%q): reading: %w", key, err)
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("Get(%q): got %d bytes, want %d, content differs", key, len(got), len(data))
					return
				}
			}
		})
	}
	if !waitOK(t, &wg, errs) {
		return
	}
	if n := len(listKeys(t, s, "c/")); n != workers*perWorker {
		t.Fatalf("List after concurrent puts: %d keys, want %d", n, workers*perWorker)
	}
}

// waitOK waits for wg, reports the errors sent to errs and tells whether
// there were none.
func waitOK(t *testing.T, wg *sync.WaitGroup, errs chan error) bool {
	t.Helper()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return !t.Failed()
}

// testConcurrentPutDelete puts and deletes keys in the same directories
// from several goroutines (a file store creates and prunes directories
// under each other's feet) and checks that every call succeeds and the
// surviving keys are intact.
func testConcurrentPutDelete(t *testing.T, s blob.Store) {
	const workers, rounds = 6, 15
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				key := fmt.Sprintf("pd/%d/x/%d-%d", i%3, w, i)
				if err := s.Put(ctx, key, bytes.NewReader([]byte(key)), -1); err != nil {
					errs <- fmt.Errorf("Put(%q): %w", key, err)
					return
				}
				if err := s.Delete(ctx, key); err != nil {
					errs <- fmt.Errorf("Delete(%q): %w", key, err)
					return
				}
			}
			key := fmt.Sprintf("pd/0/x/final-%d", w)
			if err := s.Put(ctx, key, bytes.NewReader([]byte(key)), -1); err != nil {
				errs <- fmt.Errorf("Put(%q): %w", key, err)
			}
		})
	}
	if !waitOK(t, &wg, errs) {
		return
	}
	keys := listKeys(t, s, "pd/")
	if len(keys) != workers {
		t.Fatalf("List after concurrent puts and deletes: %q, want the %d final keys", keys, workers)
	}
	for _, k := range keys {
		checkBytes(t, "Get("+k+")", get(t, s, k, 0, -1), []byte(k))
	}
}

// chunkReader yields total bytes in chunks and calls hook once after
// hookAt bytes have been read, and then fails with failErr if set.
type chunkReader struct {
	data    []byte
	n       int
	hookAt  int
	hook    func()
	failErr error
	hooked  bool
}

func (c *chunkReader) Read(b []byte) (int, error) {
	if c.n >= c.hookAt && !c.hooked {
		c.hooked = true
		if c.hook != nil {
			c.hook()
		}
		if c.failErr != nil {
			return 0, c.failErr
		}
	}
	if c.n >= len(c.data) {
		return 0, io.EOF
	}
	end := min(c.n+32<<10, len(c.data))
	if c.n < c.hookAt && end > c.hookAt {
		end = c.hookAt
	}
	n := copy(b, c.data[c.n:end])
	c.n += n
	return n, nil
}

// putFails runs Put with body and checks that it fails with an error
// matching want (if non-nil) and leaves key in its previous state (prev:
// nil for absent).
func putFails(t *testing.T, s blob.Store, ctx context.Context, key string, r io.Reader, size int64, want error, prev []byte) {
	t.Helper()
	err := s.Put(ctx, key, r, size)
	if err == nil {
		t.Fatalf("Put(%q, size %d): no error, want one", key, size)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("Put(%q, size %d): %v, want an error matching %v", key, size, err, want)
	}
	if prev == nil {
		mustNotExist(t, s, key)
	} else {
		checkBytes(t, "Get("+key+") after a failed overwrite", get(t, s, key, 0, -1), prev)
	}
}

func testCanceled(t *testing.T, s blob.Store) {
	data := Data(40, LargeSize)
	// Canceled before the call.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	putFails(t, s, ctx, "pre", bytes.NewReader([]byte("abc")), 3, context.Canceled, nil)
	// Canceled in the middle of the body, for each size mode and for
	// bodies below and above one part.
	old := []byte("the old version")
	put(t, s, "overwritten", old, -1)
	for _, n := range []int{100 << 10, len(data)} {
		for _, size := range []int64{int64(n), -1} {
			for _, key := range []string{fmt.Sprintf("mid/%d/%d", n, size), "overwritten"} {
				ctx, cancel := context.WithCancel(context.Background())
				r := &chunkReader{data: data[:n], hookAt: n / 2, hook: cancel}
				var prev []byte
				if key == "overwritten" {
					prev = old
				}
				putFails(t, s, ctx, key, r, size, context.Canceled, prev)
				cancel()
			}
		}
	}
}

func testReaderError(t *testing.T, s blob.Store) {
	data := Data(50, LargeSize)
	boom := errors.New("client went away")
	old := []byte("the old version")
	put(t, s, "overwritten", old, -1)
	for _, n := range []int{0, 100 << 10, len(data)} {
		for _, size := range []int64{int64(n), -1} {
			for _, key := range []string{fmt.Sprintf("fail/%d/%d", n, size), "overwritten"} {
				var prev []byte
				if key == "overwritten" {
					prev = old
				}
				r := &chunkReader{data: data[:n], hookAt: n / 2, failErr: boom}
				putFails(t, s, context.Background(), key, r, size, boom, prev)
			}
		}
	}
}

func testSizeMismatch(t *testing.T, s blob.Store) {
	data := Data(60, 1000)
	cases := []struct {
		n    int
		size int64
	}{
		{500, 1000}, // short body
		{0, 10},     // empty body, size declared
		{1000, 999}, // one byte too many
		{1000, 0},   // body where none declared
	}
	for _, c := range cases {
		key := fmt.Sprintf("mismatch/%d/%d", c.n, c.size)
		putFails(t, s, context.Background(), key, onlyReader{bytes.NewReader(data[:c.n])}, c.size, nil, nil)
	}
	if err := s.Put(context.Background(), "badsize", bytes.NewReader(nil), -5); err == nil {
		t.Fatalf("Put with size -5: no error")
	}
}

func testInvalidKeys(t *testing.T, s blob.Store) {
	ctx := context.Background()
	invalid := []string{
		"", "/abs", "/", "a/", "a//b", ".", "..", "../x", "a/../b", "a/./b", "a/..", ".hidden", "a/.tmp-x",
		"nul\x00byte", "new\nline", "tab\tx", "del\x7f", "back\\slash", "\xff\xfe", string(make([]byte, 1025)),
		"x/" + string(bytes.Repeat([]byte("y"), 256)),
	}
	for _, key := range invalid {
		if err := s.Put(ctx, key, bytes.NewReader([]byte("x")), 1); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", key, err)
		}
		if rc, err := s.Get(ctx, key, 0, -1); !errors.Is(err, blob.ErrInvalidKey) {
			if rc != nil {
				rc.Close()
			}
			t.Errorf("Get(%q): %v, want ErrInvalidKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Delete(%q): %v, want ErrInvalidKey", key, err)
		}
		if blob.IsTemporary(blob.ValidKey(key)) {
			t.Errorf("IsTemporary(ValidKey(%q)) = true", key)
		}
	}
	if keys := listKeys(t, s, ""); len(keys) != 0 {
		t.Fatalf("invalid keys created objects: %q", keys)
	}
	long := string(bytes.Repeat([]byte("k"), 255)) + "/" + string(bytes.Repeat([]byte("v"), 255))
	put(t, s, long, []byte("long"), 4)
	checkBytes(t, "Get(long key)", get(t, s, long, 0, -1), []byte("long"))
}

func testPing(t *testing.T, s blob.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
