package imap

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// maxRanges bounds the ranges of the UID set of one backend Fetch call
// (the backend refuses more than max-uid-ranges, 10,000 by default).
const maxRanges = 1000

// chunkEnd returns how many targets make up the first backend request: as
// many as fit in maxRanges ranges.
func chunkEnd(ts []target) int {
	ranges := 0
	for i := range ts {
		if i == 0 || ts[i].uid != ts[i-1].uid+1 {
			ranges++
			if ranges > maxRanges {
				return i
			}
		}
	}
	return len(ts)
}

// fetchSet is the backend UID set of a FETCH of targets. For consecutive
// sequence numbers (1:*, n:m) it is one range from the first UID to the
// last: UIDs only grow, so every message between them that still exists is
// one of targets, and the backend reads one range in UID order, where
// exact ranges around expunged UIDs made it join a list of ranges and sort
// (a mailbox with holes took the slow plan of 5d83a71). fetchChunk skips
// any row that is not a target.
func fetchSet(ts []target) *mailboxv1.UIDSet {
	for i := 1; i < len(ts); i++ {
		if ts[i].seq != ts[i-1].seq+1 || ts[i].uid <= ts[i-1].uid {
			return uidSetOf(uidsOf(ts))
		}
	}
	if len(ts) == 0 {
		return &mailboxv1.UIDSet{}
	}
	return &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: ts[0].uid, End: ts[len(ts)-1].uid}}}
}

// errBroken: a body failed half-way through its literal; the connection
// cannot be kept in sync and is closed.
var errBroken = errors.New("imap: body stream broke inside a literal")

// Fetch streams metadata from the backend in batches and writes each
// message as it arrives; bodies are streamed chunk by chunk from GetBody.
// Metadata (flags, dates, sizes, ENVELOPE, BODYSTRUCTURE, top-level header
// fields) never reads S3. A FETCH of one body section alone (BODY.PEEK[])
// skips the metadata call (fetchBodies).
func (ss *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) (err error) {
	defer ss.track("fetch", &err)()
	sel := ss.sel.Load()
	if options.Vanished {
		if err := ss.fetchVanished(w, numSet, options.ChangedSince); err != nil {
			return err
		}
	}
	targets := ss.resolve(numSet)
	if len(targets) == 0 {
		return nil
	}
	if bodyOnly(options, sel.readOnly) {
		return ss.fetchBodies(w, targets, options)
	}
	targets, err = ss.fetchCached(w, targets, options)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return nil
	}
	// Sizes and dates are always asked for when the message cache is on:
	// they cost a few bytes a message and make its entries whole.
	req := &mailboxv1.FetchRequest{AccountId: ss.acct.ID, MailboxId: sel.mb.key.id, Envelope: options.Envelope,
		BodyStructure: options.BodyStructure != nil, InternalDate: options.InternalDate || options.RFC822Size || ss.srv.cfg.MessageCache > 0,
		BatchSize: uint32(ss.srv.cfg.FetchBatch), ChangedSince: options.ChangedSince}
	if len(options.BinarySection)+len(options.BinarySectionSize) > 0 {
		req.BodyStructure = true // to find each part's transfer encoding
	}
	for _, s := range options.BodySection {
		if len(s.Part) == 0 && s.Specifier == imap.PartSpecifierHeader {
			req.Header = true
		}
	}
	var failed error
	for len(targets) > 0 {
		chunk := targets[:chunkEnd(targets)]
		targets = targets[len(chunk):]
		req.Uids = fetchSet(chunk)
		pinned := ss.cachedEnvelopes(req, chunk, options)
		if err := ss.fetchChunk(w, req, chunk, options, pinned); err != nil {
			if errors.Is(err, errBroken) || ss.ctx.Err() != nil {
				ss.conn.NetConn().Close()
				return err
			}
			var ie *imap.Error
			if !errors.As(err, &ie) {
				return err // writing to the client failed
			}
			failed = err
		}
	}
	return failed
}

// cachedEnvelopes returns, aligned with chunk, the ENVELOPEs this frontend
// has cached (nil where it has none; nil without ENVELOPE or cache), and
// names them in req.CachedEnvelopes so that the backend leaves them out.
// The bytes are held here, so an entry dropped from the cache meanwhile
// is still written.
func (ss *session) cachedEnvelopes(req *mailboxv1.FetchRequest, chunk []target, options *imap.FetchOptions) [][]byte {
	req.CachedEnvelopes = nil
	if !options.Envelope || ss.srv.envelopes == nil {
		return nil
	}
	sel := ss.sel.Load()
	pinned := make([][]byte, len(chunk))
	var have []uint32
	for i, t := range chunk {
		if b := ss.srv.envelopes.get(envelopeKey{sel.mb.key.account, sel.mb.key.id, sel.mb.uidValidity, t.uid}); b != nil {
			pinned[i] = b
			have = append(have, t.uid)
		}
	}
	if len(have) > 0 {
		set := uidSetOf(have)
		if len(set.Ranges) > maxRanges {
			set.Ranges = set.Ranges[:maxRanges] // the rest come with their envelopes
		}
		req.CachedEnvelopes = set
	}
	return pinned
}

// fetchChunk fetches the metadata of targets and writes their responses;
// pinned (aligned with targets, or nil) holds envelopes already rendered.
func (ss *session) fetchChunk(w *imapserver.FetchWriter, req *mailboxv1.FetchRequest, targets []target, options *imap.FetchOptions, pinned [][]byte) error {
	var written int
	mb := ss.sel.Load().mb
	var idx []int // per row of a response: its target, or -1
	for attempt := 0; ; attempt++ {
		c, ctx, cancel, err := ss.rpc(true)
		if err != nil {
			return ss.fail("fetch", err, nil)
		}
		gen := mb.fetchGen()
		stream, err := c.Fetch(ctx, req)
		j := 0
		for err == nil {
			var r *mailboxv1.FetchResponse
			r, err = stream.Recv()
			if err != nil {
				break
			}
			// The rows (and the ENVELOPEs rendered for them) go into the
			// message cache before the responses are written, so that a
			// \Seen set while writing is newer than what is recorded.
			idx = idx[:0]
			var envs [][]byte
			if options.Envelope {
				envs = make([][]byte, len(r.Messages))
			}
			for i, m := range r.Messages {
				for j < len(targets) && targets[j].uid < m.Uid {
					j++
				}
				if j == len(targets) || targets[j].uid != m.Uid {
					idx = append(idx, -1)
					continue
				}
				idx = append(idx, j)
				if envs != nil {
					if pinned != nil {
						envs[i] = pinned[j]
					}
					if envs[i] == nil {
						// Not cached when the FETCH began, so the backend sent it.
						envs[i] = ss.srv.envelopes.wire(envelopeKey{mb.key.account, mb.key.id, mb.uidValidity, m.Uid}, m.Envelope)
					}
				}
			}
			mb.noteRows(gen, r.Messages, req.InternalDate, envs)
			for i, m := range r.Messages {
				if idx[i] < 0 {
					continue
				}
				var env []byte
				if envs != nil {
					env = envs[i]
				}
				if werr := ss.writeMessage(w, targets[idx[i]].seq, m, options, env); werr != nil {
					cancel()
					return werr
				}
				written++
			}
		}
		cancel()
		if err == io.EOF {
			return nil
		}
		ss.srv.unreachable(c, err)
		if written > 0 || attempt > 0 || !temporary(err) || ss.ctx.Err() != nil {
			return ss.fail("fetch", err, nil)
		}
	}
}

// writeMessage writes one FETCH response. Body sections without .PEEK set
// \Seen (not in a read-only mailbox); the new flags follow the bodies.
func (ss *session) writeMessage(w *imapserver.FetchWriter, seq uint32, m *mailboxv1.MessageMeta, options *imap.FetchOptions, env []byte) error {
	sel := ss.sel.Load()
	seen := m.Flags.GetSystem()&uint32(mailboxv1.Flag_FLAG_SEEN) != 0
	setSeen := false
	if !sel.readOnly && !seen {
		for _, s := range options.BodySection {
			if !s.Peek {
				setSeen = true
			}
		}
		for _, s := range options.BinarySection {
			if !s.Peek {
				setSeen = true
			}
		}
	}
	deferred := setSeen // FLAGS are written after the bodies
	rw := w.CreateMessage(seq)
	if options.UID {
		rw.WriteUID(imap.UID(m.Uid))
	}
	if options.Flags && !setSeen {
		rw.WriteFlags(flagsFromProto(m.Flags))
	}
	if options.ModSeq && !setSeen {
		rw.WriteModSeq(m.Modseq)
	}
	if options.InternalDate {
		rw.WriteInternalDate(time.Unix(m.InternalDate, 0))
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	if options.Envelope {
		if env == nil {
			// Not cached when the FETCH began, so the backend sent it.
			env = ss.srv.envelopes.wire(envelopeKey{sel.mb.key.account, sel.mb.key.id, sel.mb.uidValidity, m.Uid}, m.Envelope)
		}
		rw.WriteEnvelopeRaw(env)
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(bodyStructureFromProto(m.BodyStructure))
	}
	var sectionErr error
	flags, modseq := m.Flags, m.Modseq
	for _, s := range options.BodySection {
		ch, err := ss.writeSection(rw, m, s, setSeen && !s.Peek)
		if errors.Is(err, errBroken) {
			rw.Close() // writes nothing into the open literal; frees the encoder
			return err
		}
		if err != nil {
			sectionErr = err
			continue
		}
		if ch != nil {
			flags, modseq, setSeen = ch.Flags, max(modseq, ch.Modseq), false
		}
	}
	if len(options.BinarySection)+len(options.BinarySectionSize) > 0 {
		ch, err := ss.writeBinary(rw, m, options, setSeen)
		if errors.Is(err, errBroken) {
			rw.Close() // writes nothing into the open literal; frees the encoder
			return err
		}
		if err != nil {
			sectionErr = err
		}
		if ch != nil {
			flags, modseq = ch.Flags, max(modseq, ch.Modseq)
		}
	}
	if (options.Flags && deferred) || flags != m.Flags {
		rw.WriteFlags(flagsFromProto(flags))
	}
	if modseq > m.Modseq {
		sel.mb.noteFlags(m.Uid, flags, modseq) // \Seen set by a body read
	}
	if options.ModSeq && deferred {
		rw.WriteModSeq(modseq)
	}
	if err := rw.Close(); err != nil {
		return err
	}
	return sectionErr
}

// writeSection writes one BODY[...] item. When reading it set \Seen, it
// returns the chunk with the message's new flags and MODSEQ.
func (ss *session) writeSection(rw *imapserver.FetchResponseWriter, m *mailboxv1.MessageMeta, s *imap.FetchItemBodySection, setSeen bool) (*mailboxv1.BodyChunk, error) {
	fields := len(s.HeaderFields) > 0 || len(s.HeaderFieldsNot) > 0
	if s.Specifier == imap.PartSpecifierHeader && (len(s.Part) == 0 || fields) && !setSeen {
		// Header sections come from the stored header block (top level)
		// or one GetBody of the part's header; fields are filtered here.
		hdr := m.Header
		if len(s.Part) > 0 {
			b, _, err := ss.readSection(m.Uid, s.Part, false)
			if err != nil {
				return nil, ss.fail("fetch body", err, errExpunged)
			}
			hdr = b
		}
		if fields {
			hdr = filterHeader(hdr, append(s.HeaderFields, s.HeaderFieldsNot...), len(s.HeaderFieldsNot) > 0)
		}
		if p := s.Partial; p != nil {
			hdr = hdr[min(int64(len(hdr)), p.Offset):]
			if p.Size > 0 {
				hdr = hdr[:min(int64(len(hdr)), p.Size)]
			}
		}
		wc := rw.WriteBodySection(s, int64(len(hdr)))
		if _, err := wc.Write(hdr); err != nil {
			return nil, err
		}
		return nil, wc.Close()
	}
	req := &mailboxv1.GetBodyRequest{AccountId: ss.acct.ID, MailboxId: ss.sel.Load().mb.key.id, Uid: m.Uid, SetSeen: setSeen}
	for _, p := range s.Part {
		req.Part = append(req.Part, uint32(p))
	}
	switch s.Specifier {
	case imap.PartSpecifierHeader:
		req.Section = mailboxv1.BodySection_BODY_SECTION_HEADER
	case imap.PartSpecifierText:
		req.Section = mailboxv1.BodySection_BODY_SECTION_TEXT
	case imap.PartSpecifierMIME:
		req.Section = mailboxv1.BodySection_BODY_SECTION_MIME
	}
	if p := s.Partial; p != nil && !fields {
		req.Offset, req.Length = p.Offset, p.Size
		if p.Size == 0 {
			req.Length = -1 // <n.0>: nothing
		}
	}
	if fields {
		// Not a peek: the header is read with set_seen.
		hdr, flags, err := ss.readSection(m.Uid, s.Part, setSeen)
		if err != nil {
			return nil, ss.fail("fetch body", err, errExpunged)
		}
		hdr = filterHeader(hdr, append(s.HeaderFields, s.HeaderFieldsNot...), len(s.HeaderFieldsNot) > 0)
		wc := rw.WriteBodySection(s, int64(len(hdr)))
		if _, err := wc.Write(hdr); err != nil {
			return nil, err
		}
		return flags, wc.Close()
	}
	if req.Length < 0 {
		wc := rw.WriteBodySection(s, 0)
		return nil, wc.Close()
	}
	c, ctx, cancel, err := ss.rpc(true)
	if err != nil {
		return nil, ss.fail("fetch body", err, nil)
	}
	defer cancel()
	stream, err := c.GetBody(ctx, req)
	var first *mailboxv1.BodyChunk
	if err == nil {
		first, err = stream.Recv()
	}
	if err != nil {
		ss.srv.unreachable(c, err)
		return nil, ss.fail("fetch body", err, errExpunged)
	}
	if err := ss.copyBody(rw.WriteBodySection(s, first.TotalSize), stream, first, m.Uid); err != nil {
		return nil, err
	}
	if first.Flags != nil {
		return first, nil
	}
	return nil, nil
}

// copyBody writes a GetBody stream, whose first chunk has been received,
// into the literal wc of first.TotalSize octets. A stream that breaks or
// does not match that size is errBroken.
func (ss *session) copyBody(wc io.WriteCloser, stream mailboxv1.Mailbox_GetBodyClient, first *mailboxv1.BodyChunk, uid uint32) error {
	n := int64(0)
	chunk := first
	for {
		if len(chunk.Data) > 0 {
			if n+int64(len(chunk.Data)) > first.TotalSize {
				return errBroken
			}
			if _, err := wc.Write(chunk.Data); err != nil {
				return err
			}
			n += int64(len(chunk.Data))
		}
		var err error
		chunk, err = stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			ss.log.Warn("imap: body stream failed inside a literal", "uid", uid, "err", err)
			return errBroken
		}
	}
	ss.srv.metrics.bodyBytes.Add(float64(n))
	if n != first.TotalSize {
		return errBroken
	}
	return wc.Close()
}

// bodyOnly reports whether a FETCH asks for one body section that sets no
// flag and for nothing from the metadata (UID aside), like BODY.PEEK[]:
// then GetBody alone answers it, with no Fetch call first.
func bodyOnly(o *imap.FetchOptions, readOnly bool) bool {
	if len(o.BodySection) != 1 || o.Flags || o.Envelope || o.BodyStructure != nil || o.InternalDate || o.RFC822Size ||
		o.ModSeq || o.ChangedSince != 0 || len(o.BinarySection)+len(o.BinarySectionSize) > 0 {
		return false
	}
	s := o.BodySection[0]
	return (s.Peek || readOnly) && s.Specifier != imap.PartSpecifierHeader && len(s.HeaderFields)+len(s.HeaderFieldsNot) == 0 &&
		(s.Partial == nil || s.Partial.Size != 0)
}

// fetchBodies answers a bodyOnly FETCH with one GetBody per message. A
// message GetBody does not find (expunged meanwhile, or no such part) goes
// the general way, through Fetch, which tells the two apart.
func (ss *session) fetchBodies(w *imapserver.FetchWriter, targets []target, options *imap.FetchOptions) error {
	s := options.BodySection[0]
	req := &mailboxv1.GetBodyRequest{AccountId: ss.acct.ID, MailboxId: ss.sel.Load().mb.key.id}
	for _, p := range s.Part {
		req.Part = append(req.Part, uint32(p))
	}
	switch s.Specifier {
	case imap.PartSpecifierText:
		req.Section = mailboxv1.BodySection_BODY_SECTION_TEXT
	case imap.PartSpecifierMIME:
		req.Section = mailboxv1.BodySection_BODY_SECTION_MIME
	}
	if p := s.Partial; p != nil {
		req.Offset, req.Length = p.Offset, p.Size
	}
	var failed error
	for _, t := range targets {
		req.Uid = t.uid
		found, err := ss.fetchBody(w, t, req, s, options.UID)
		if err == nil && !found {
			err = ss.fetchChunk(w, &mailboxv1.FetchRequest{AccountId: req.AccountId, MailboxId: req.MailboxId,
				Uids: uidSetOf([]uint32{t.uid})}, []target{t}, options, nil)
		}
		if err != nil {
			// As in Fetch: a broken literal ends the connection, a
			// refused message the command (after the others).
			if errors.Is(err, errBroken) || ss.ctx.Err() != nil {
				ss.conn.NetConn().Close()
				return err
			}
			var ie *imap.Error
			if !errors.As(err, &ie) {
				return err
			}
			failed = err
		}
	}
	return failed
}

// fetchBody writes one message's FETCH response from GetBody; a temporary
// failure before anything is written is tried once more (on another
// backend). found is false when GetBody answered NotFound.
func (ss *session) fetchBody(w *imapserver.FetchWriter, t target, req *mailboxv1.GetBodyRequest, s *imap.FetchItemBodySection, uid bool) (found bool, _ error) {
	for attempt := 0; ; attempt++ {
		c, ctx, cancel, err := ss.rpc(true)
		if err != nil {
			return false, ss.fail("fetch body", err, nil)
		}
		defer cancel()
		stream, err := c.GetBody(ctx, req)
		var first *mailboxv1.BodyChunk
		if err == nil {
			first, err = stream.Recv()
		}
		if status.Code(err) == codes.NotFound {
			return false, nil
		}
		if err != nil {
			ss.srv.unreachable(c, err)
			if attempt > 0 || !temporary(err) || ss.ctx.Err() != nil {
				return false, ss.fail("fetch body", err, nil)
			}
			continue
		}
		rw := w.CreateMessage(t.seq)
		if uid {
			rw.WriteUID(imap.UID(t.uid))
		}
		if err := ss.copyBody(rw.WriteBodySection(s, first.TotalSize), stream, first, t.uid); err != nil {
			// The response writer holds the connection's encoder until
			// closed; with the literal open, Close writes nothing.
			rw.Close()
			return true, err
		}
		return true, rw.Close()
	}
}

// readSection reads a (small) header section whole, setting \Seen if
// asked; it returns the chunk with the new flags when that changed them.
func (ss *session) readSection(uid uint32, part []int, setSeen bool) ([]byte, *mailboxv1.BodyChunk, error) {
	req := &mailboxv1.GetBodyRequest{AccountId: ss.acct.ID, MailboxId: ss.sel.Load().mb.key.id, Uid: uid,
		Section: mailboxv1.BodySection_BODY_SECTION_HEADER, SetSeen: setSeen}
	for _, p := range part {
		req.Part = append(req.Part, uint32(p))
	}
	var flags *mailboxv1.BodyChunk
	b, err := call(ss, !setSeen, func(ctx context.Context, c mailboxv1.MailboxClient) ([]byte, error) {
		stream, err := c.GetBody(ctx, req)
		if err != nil {
			return nil, err
		}
		var out []byte
		for {
			ch, err := stream.Recv()
			if err == io.EOF {
				return out, nil
			}
			if err != nil {
				return nil, err
			}
			if ch.Flags != nil {
				flags = ch
			}
			if len(out)+len(ch.Data) > 1<<20 {
				return nil, errLimit
			}
			out = append(out, ch.Data...)
		}
	})
	return b, flags, err
}
