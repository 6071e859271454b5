package blob_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"mailcluster/backend/blob"
	"mailcluster/backend/blob/blobtest"
)

// drivers are the stores the benchmarks compare, against real servers.
var drivers = []struct {
	name string
	new  func(testing.TB) blob.Store
}{
	{"FS", newFS},
	{"S3", newS3},
}

func benchPut(b *testing.B, size int) {
	data := blobtest.Data(7, size)
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			s := d.new(b)
			ctx := context.Background()
			b.SetBytes(int64(size))
			b.ResetTimer()
			i := 0
			for b.Loop() {
				key := fmt.Sprintf("bench/%08d", i)
				i++
				if err := s.Put(ctx, key, bytes.NewReader(data), int64(size)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPut4K stores 4 KiB bodies (a typical small message).
func BenchmarkPut4K(b *testing.B) { benchPut(b, 4<<10) }

// BenchmarkPut1M stores 1 MiB bodies (a message with an attachment).
func BenchmarkPut1M(b *testing.B) { benchPut(b, 1<<20) }

// BenchmarkGet4K reads whole 4 KiB bodies, cycling over 100 objects.
func BenchmarkGet4K(b *testing.B) {
	const size, n = 4 << 10, 100
	data := blobtest.Data(8, size)
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			s := d.new(b)
			ctx := context.Background()
			for i := range n {
				if err := s.Put(ctx, fmt.Sprintf("bench/%03d", i), bytes.NewReader(data), size); err != nil {
					b.Fatal(err)
				}
			}
			buf := make([]byte, 0, size+1)
			b.SetBytes(size)
			b.ResetTimer()
			i := 0
			for b.Loop() {
				rc, err := s.Get(ctx, fmt.Sprintf("bench/%03d", i%n), 0, -1)
				if err != nil {
					b.Fatal(err)
				}
				i++
				w := bytes.NewBuffer(buf[:0])
				_, err = io.Copy(w, rc)
				rc.Close()
				if err != nil {
					b.Fatal(err)
				}
				if w.Len() != size {
					b.Fatalf("read %d bytes, want %d", w.Len(), size)
				}
			}
		})
	}
}
