package imapwire

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"testing"
)

// Numbers are written in decimal, and (mailcluster change) without an
// allocation per number.
func TestEncoderNumbers(t *testing.T) {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	enc := NewEncoder(bw, ConnSideServer)
	enc.Number(0).SP().Number(math.MaxUint32).SP().Number64(-5).SP().Number64(math.MinInt64).SP().ModSeq(math.MaxUint64).SP().Number(123)
	if err := enc.CRLF(); err != nil {
		t.Fatal(err)
	}
	want := "0 4294967295 -5 -9223372036854775808 18446744073709551615 123\r\n"
	if out.String() != want {
		t.Errorf("%q, want %q", out.String(), want)
	}
	enc = NewEncoder(bufio.NewWriterSize(io.Discard, 4096), ConnSideServer)
	if n := testing.AllocsPerRun(100, func() { enc.Number(123456).ModSeq(987654321) }); n != 0 {
		t.Errorf("%v allocations per two numbers", n)
	}
}
