package backend

import (
	"bytes"
	"testing"

	"mailcluster/backend/message"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// Any stored message and any part path give a range inside the message or
// an error, never a panic.
func FuzzSectionRange(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n"), []byte{1}, uint8(0))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner\r\n--b--\r\n"), []byte{1, 1}, uint8(1))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\na\r\n--b\r\n\r\nb\r\n--b--\r\n"), []byte{2}, uint8(3))
	f.Fuzz(func(t *testing.T, msg []byte, path []byte, sec uint8) {
		p, err := message.Parse(bytes.NewReader(msg), int64(len(msg)), message.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(path) > 8 {
			path = path[:8]
		}
		part := make([]uint32, len(path))
		for i, b := range path {
			part[i] = uint32(b % 5)
		}
		start, end, err := sectionRange(p.Structure, int64(len(msg)), part, mailboxv1.BodySection(sec%4))
		if err != nil {
			return
		}
		if start < 0 || end > int64(len(msg)) || start > end {
			t.Fatalf("range [%d,%d) outside a %d-byte message for part %v section %d", start, end, len(msg), part, sec%4)
		}
	})
}
