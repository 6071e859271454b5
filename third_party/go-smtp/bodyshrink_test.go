package smtp

import (
	"io"
	"net"
	"testing"
)

// mailcluster: the 32 KiB body reader kept because commands followed the
// body in its buffer is given back once they are read, so that an idle
// connection is back to its own 4 KiB reader.
func TestBodyReaderShrinksAfterPipelinedCommands(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	c := newConn(server, &Server{})
	small := c.text.R
	go io.WriteString(client, "a body line\r\n.\r\nNOOP\r\nRSET\r\n")
	restore := c.bodyRead()
	if _, err := io.Copy(io.Discard, newDataReader(c)); err != nil {
		t.Fatal(err)
	}
	restore()
	if c.text.R == small || c.heldBig == nil {
		t.Fatal("the body reader holding pipelined commands was not kept")
	}
	for _, want := range []string{"NOOP", "RSET"} {
		if line, err := c.readLine(); err != nil || line != want {
			t.Fatalf("read %q, %v; want %s", line, err, want)
		}
	}
	c.shrinkReader() // as the next command's read does first
	if c.text.R != small || c.heldBig != nil {
		t.Fatal("still on the 32 KiB reader after the pipelined commands were read")
	}
}
