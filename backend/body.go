package backend

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"

	"mailcluster/backend/store"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// bodyChunk is the most body octets in one BodyChunk: 32 KiB less room for
// the chunk's other fields, so that each message fits the 32 KiB buffers of
// gRPC's pool, the largest below 1 MiB (see the frontend's deliverChunk):
// gRPC zeroes a pooled buffer on every use, on the sending side and, to
// put a message of several frames together, on the receiving one.
const bodyChunk = 32<<10 - 1024

// sectionRange returns the byte range [start, end) of a body section, from
// the offsets recorded at delivery (RFC 3501 section 6.4.5, part numbers).
func sectionRange(st *mailboxv1.BodyStructure, size int64, part []uint32, sec mailboxv1.BodySection) (int64, int64, error) {
	if len(part) == 0 {
		switch sec {
		case mailboxv1.BodySection_BODY_SECTION_ALL:
			return 0, size, nil
		case mailboxv1.BodySection_BODY_SECTION_HEADER:
			return 0, st.BodyOffset, nil
		case mailboxv1.BodySection_BODY_SECTION_TEXT:
			return st.BodyOffset, size, nil
		default:
			return 0, 0, errBadPart
		}
	}
	// msg is the root part of the message the next number indexes into;
	// cur is the part selected so far.
	msg := st
	var cur *mailboxv1.BodyStructure
	for i, n := range part {
		if n == 0 {
			return 0, 0, errBadPart
		}
		var parent *mailboxv1.BodyStructure
		switch {
		case i == 0:
			parent = msg
		case cur.Type == "multipart":
			parent = cur
		case cur.Type == "message" && (cur.Subtype == "rfc822" || cur.Subtype == "global") && cur.Message != nil:
			parent = cur.Message
		default:
			return 0, 0, errBadPart
		}
		if parent.Type == "multipart" {
			if int(n) > len(parent.Parts) {
				return 0, 0, errBadPart
			}
			cur = parent.Parts[n-1]
		} else {
			if n != 1 {
				return 0, 0, errBadPart
			}
			cur = parent
		}
	}
	switch sec {
	case mailboxv1.BodySection_BODY_SECTION_ALL:
		return cur.BodyOffset, cur.EndOffset, nil
	case mailboxv1.BodySection_BODY_SECTION_MIME:
		return cur.HeaderOffset, cur.BodyOffset, nil
	case mailboxv1.BodySection_BODY_SECTION_HEADER, mailboxv1.BodySection_BODY_SECTION_TEXT:
		if cur.Type != "message" || cur.Message == nil {
			return 0, 0, errBadPart
		}
		enc := cur.Message
		if sec == mailboxv1.BodySection_BODY_SECTION_HEADER {
			return enc.HeaderOffset, enc.BodyOffset, nil
		}
		return enc.BodyOffset, cur.EndOffset, nil
	}
	return 0, 0, errBadPart
}

func (s *service) GetBody(r *mailboxv1.GetBodyRequest, stream grpc.ServerStreamingServer[mailboxv1.BodyChunk]) error {
	ctx := stream.Context()
	if err := account(ctx, r.AccountId); err != nil {
		return s.fail("GetBody", err)
	}
	if len(r.Part) > 100 || r.Offset < 0 || r.Length < 0 {
		return s.fail("GetBody", &store.InvalidError{Msg: "invalid part or range"})
	}
	// A read that may set \Seen needs the flags as they are now; any
	// other takes the location from the cache when it is there.
	key := bodyRefKey{r.AccountId, r.MailboxId, r.Uid}
	var ref *store.BodyRef
	if !r.SetSeen {
		ref = s.refs.get(key)
	}
	cached := ref != nil
	if !cached {
		gen := s.refs.gen(key)
		var err error
		if ref, err = s.store.Body(ctx, r.AccountId, r.MailboxId, r.Uid); err != nil {
			return s.fail("GetBody", err)
		}
		s.refs.put(key, ref, gen)
	}
	first := &mailboxv1.BodyChunk{}
	if r.SetSeen && ref.Flags.System&uint32(mailboxv1.Flag_FLAG_SEEN) == 0 {
		resp, err := s.store.SetSeen(ctx, r.AccountId, r.MailboxId, r.Uid)
		if err != nil {
			return s.fail("GetBody", err)
		}
		if len(resp.GetMessages()) == 1 {
			first.Flags, first.Modseq = resp.Messages[0].Flags, resp.Messages[0].Modseq
		}
	}
	start, end, err := sectionRange(ref.Structure, ref.Size, r.Part, r.Section)
	if err != nil {
		return s.fail("GetBody", err)
	}
	if start < 0 || end > ref.Size || start > end {
		return s.fail("GetBody", errBadPart)
	}
	start += r.Offset
	if start > end {
		start = end
	}
	if r.Length > 0 && start+r.Length < end {
		end = start + r.Length
	}
	first.TotalSize = end - start
	if end == start {
		if cached {
			// Nothing to read, so nothing shows whether the message is
			// still there: PostgreSQL tells.
			if _, err := s.store.Body(ctx, r.AccountId, r.MailboxId, r.Uid); err != nil {
				s.refs.drop(key)
				return s.fail("GetBody", err)
			}
		}
		return stream.Send(first)
	}
	rc, err := s.blobs.Get(ctx, ref.BlobKey, start, end-start)
	if err != nil && cached {
		// The message may have been expunged and its body deleted since
		// its location was cached: PostgreSQL tells.
		s.refs.drop(key)
		if _, err := s.store.Body(ctx, r.AccountId, r.MailboxId, r.Uid); err != nil {
			return s.fail("GetBody", err)
		}
		rc, err = s.blobs.Get(ctx, ref.BlobKey, start, end-start)
	}
	if err != nil {
		return s.fail("GetBody", err)
	}
	defer rc.Close()
	buf := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(buf)
	return s.streamBlob("GetBody", stream, first, rc, ref.BlobKey, end-start, *buf)
}

// bodyBufs holds the read buffers of GetBody.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, bodyChunk); return &b }}

// maxBodiesPerCall bounds the UIDs of one GetBodies call.
const maxBodiesPerCall = 1000

// GetBodies streams whole messages one after the other: one metadata query
// for all of them instead of one per GetBody, and one stream. Flow control
// keeps at most a window of data ahead of a client that reads slowly.
func (s *service) GetBodies(r *mailboxv1.GetBodiesRequest, stream grpc.ServerStreamingServer[mailboxv1.BodyChunk]) error {
	ctx := stream.Context()
	if err := account(ctx, r.AccountId); err != nil {
		return s.fail("GetBodies", err)
	}
	if len(r.Uids) > maxBodiesPerCall {
		return s.fail("GetBodies", &store.InvalidError{Msg: "too many UIDs"})
	}
	refs, err := s.store.Bodies(ctx, r.AccountId, r.MailboxId, r.Uids)
	if err != nil {
		return s.fail("GetBodies", err)
	}
	buf := make([]byte, bodyChunk)
	for _, uid := range r.Uids {
		ref, ok := refs[uid]
		if !ok {
			if err := stream.Send(&mailboxv1.BodyChunk{Uid: uid, Gone: true}); err != nil {
				return err
			}
			continue
		}
		if err := s.sendBlob(ctx, "GetBodies", stream, &mailboxv1.BodyChunk{Uid: uid, TotalSize: ref.Size}, ref.BlobKey, 0, ref.Size, buf); err != nil {
			return err
		}
	}
	return nil
}

// sendBlob streams size bytes of a stored body from offset start, in
// chunks of len(buf), the first piece in first; errors are reported as
// method's. A body shorter than its metadata says is a server fault, never
// silently truncated output.
func (s *service) sendBlob(ctx context.Context, method string, stream grpc.ServerStreamingServer[mailboxv1.BodyChunk], first *mailboxv1.BodyChunk, key string, start, size int64, buf []byte) error {
	if size == 0 {
		return stream.Send(first)
	}
	rc, err := s.blobs.Get(ctx, key, start, size)
	if err != nil {
		return s.fail(method, err)
	}
	defer rc.Close()
	return s.streamBlob(method, stream, first, rc, key, size, buf)
}

// streamBlob sends size bytes of rc, the stored body key, as sendBlob.
func (s *service) streamBlob(method string, stream grpc.ServerStreamingServer[mailboxv1.BodyChunk], first *mailboxv1.BodyChunk, rc io.Reader, key string, size int64, buf []byte) error {
	sent := int64(0)
	msg := first
	for sent < size {
		n, err := io.ReadFull(rc, buf[:min(int64(len(buf)), size-sent)])
		if n > 0 {
			msg.Data = buf[:n]
			if err := stream.Send(msg); err != nil {
				return err
			}
			msg = &mailboxv1.BodyChunk{}
			sent += int64(n)
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				s.log.Error("stored body is shorter than recorded", "key", key, "want", size, "got", sent)
				return s.fail(method, errors.New("short body"))
			}
			return s.fail(method, err)
		}
	}
	return nil
}
