package backend

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	"mailcluster/backend/dsn"
	"mailcluster/backend/message"
	"mailcluster/backend/store"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// spool holds a message while it is being stored: in memory up to a limit,
// then in an unlinked temporary file. It enforces the maximum message size
// while the message streams in, and stores line endings as CRLF: a bare LF
// becomes CRLF (RFC 5322 section 2.3), so that the octets IMAP and POP3
// send, and every size and offset recorded at delivery, agree.
type spool struct {
	max, memLimit int64
	dir           string
	buf           bytes.Buffer
	file          *os.File
	size          int64 // octets stored
	raw           int64 // octets received
	lastCR        bool
	conv          []byte
}

// Write stores p with bare LFs turned into CRLF. A chunk without a bare LF,
// as nearly all mail is, is stored as it is; one with bare LFs is copied in
// runs between them (byte by byte, this loop was a fifth of the backend's
// CPU when storing 1 MiB messages).
func (s *spool) Write(p []byte) (int, error) {
	s.raw += int64(len(p))
	if len(p) == 0 {
		return 0, nil
	}
	bare := -1 // the first LF not preceded by CR
	for off := 0; ; {
		i := bytes.IndexByte(p[off:], '\n')
		if i < 0 {
			break
		}
		i += off
		if !(i > 0 && p[i-1] == '\r' || i == 0 && s.lastCR) {
			bare = i
			break
		}
		off = i + 1
	}
	lastCR := p[len(p)-1] == '\r'
	if bare < 0 {
		s.lastCR = lastCR
		if _, err := s.write(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	out := append(s.conv[:0], p[:bare]...)
	for q := p[bare:]; ; {
		i := bytes.IndexByte(q, '\n')
		if i < 0 {
			out = append(out, q...)
			break
		}
		out = append(out, q[:i]...)
		// The octet before this LF as received: the last one out, or the
		// previous chunk's last when none is out yet.
		prevCR := s.lastCR
		if len(out) > 0 {
			prevCR = out[len(out)-1] == '\r'
		}
		if !prevCR {
			out = append(out, '\r')
		}
		out = append(out, '\n')
		q = q[i+1:]
	}
	s.lastCR = lastCR
	s.conv = out
	if _, err := s.write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *spool) write(p []byte) (int, error) {
	if s.size+int64(len(p)) > s.max {
		return 0, errTooBig
	}
	if s.file == nil && s.size+int64(len(p)) > s.memLimit {
		f, err := os.CreateTemp(s.dir, "mailcluster-spool-")
		if err != nil {
			return 0, err
		}
		os.Remove(f.Name()) // unlinked: nothing is left behind by a crash
		if _, err := f.Write(s.buf.Bytes()); err != nil {
			f.Close()
			return 0, err
		}
		s.buf = bytes.Buffer{}
		s.file = f
	}
	var n int
	var err error
	if s.file != nil {
		n, err = s.file.Write(p)
	} else {
		n, err = s.buf.Write(p)
	}
	s.size += int64(n)
	return n, err
}

// ReaderAt returns a reader over the spooled message.
func (s *spool) ReaderAt() io.ReaderAt {
	if s.file != nil {
		return s.file
	}
	return bytes.NewReader(s.buf.Bytes())
}

func (s *spool) Close() {
	if s.file != nil {
		s.file.Close()
	}
}

// newBlobKey returns a fresh, unguessable key, grouped by day so that an
// operator can list a day's bodies, and spread over 256 prefixes within
// the day ("m/2026/11/25/3f/3f9a…"): with one directory per day the
// filesystem store created and fsynced every body of the day in one
// directory, which serialised concurrent deliveries on it (file creation
// was a third of the backend's CPU at 8 SMTP connections).
func newBlobKey(now time.Time) string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return "m/" + now.UTC().Format("2006/01/02") + "/" + h[:2] + "/" + h
}

// store stages one message: it parses the spooled body, records the upload,
// and writes the body to the blob store. The caller then commits it with
// store.Deliver. On error nothing refers to the body; a body that may have
// been written is left to the sweeper, which deletes it after the grace
// period.
func (s *service) stage(ctx context.Context, sp *spool, internalDate time.Time) (*store.NewMessage, error) {
	t0 := time.Now()
	p, err := message.Parse(sp.ReaderAt(), sp.size, message.Options{MaxSearchText: s.cfg.MaxSearchText})
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	now := time.Now()
	if internalDate.IsZero() {
		internalDate = now
	}
	msg := &store.NewMessage{
		BlobKey: newBlobKey(now), Size: sp.size, InternalDate: internalDate, SentDate: p.SentDate,
		Header: p.Header, Envelope: p.Envelope, Structure: p.Structure,
		SearchHeader: p.SearchHeader, SearchBody: p.SearchBody,
	}
	if err := s.store.StartUpload(ctx, msg.BlobKey); err != nil {
		return nil, err
	}
	t2 := time.Now()
	if err := s.blobs.Put(ctx, msg.BlobKey, io.NewSectionReader(sp.ReaderAt(), 0, sp.size), sp.size); err != nil {
		return nil, err
	}
	s.log.Debug("staged", "key", msg.BlobKey, "parse", t1.Sub(t0), "record", t2.Sub(t1), "put", time.Since(t2))
	return msg, nil
}

// discard removes a staged body that no message refers to. It is called only
// when the commit is known to have stored nothing; failures are left to the
// sweeper.
func (s *service) discard(msg *store.NewMessage) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.blobs.Delete(ctx, msg.BlobKey); err != nil {
		s.log.Warn("discarding unreferenced body; the sweeper will retry", "key", msg.BlobKey, "err", err)
		return
	}
	if err := s.store.AbandonUpload(ctx, msg.BlobKey); err != nil {
		s.log.Warn("abandoning upload record", "key", msg.BlobKey, "err", err)
	}
}

// discardLost deletes the body of a delivery that failed because the
// sweeper removed its upload record first: the outcome is known (nothing
// committed, no record left for a later sweep), so the body must go now.
func (s *service) discardLost(msg *store.NewMessage, err error) {
	if errors.Is(err, store.ErrUploadLost) {
		s.discard(msg)
	}
}

// bounceLocal tells the sender about local recipients that did not get a
// message which was stored for others (or queued): the SMTP reply to it is
// success, so a DSN is the only way they learn. Best effort: a bounce that
// cannot be stored is logged, the delivery's answer stands.
func (s *service) bounceLocal(ctx context.Context, log *slog.Logger, msg *store.NewMessage, h *mailboxv1.DeliverHeader, res []store.DeliveryResult, queueID int64) {
	var failed []dsn.Recipient
	seen := map[string]bool{}
	for i, r := range res {
		addr := h.Recipients[i].GetAddress()
		if r.Status == mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK || addr == "" || seen[addr] {
			continue
		}
		seen[addr] = true
		st, text := "5.0.0", "the message could not be stored"
		switch r.Status {
		case mailboxv1.DeliveryStatus_DELIVERY_STATUS_OVER_QUOTA:
			st, text = "5.2.2", "mailbox full"
		case mailboxv1.DeliveryStatus_DELIVERY_STATUS_NO_MAILBOX:
			st, text = "5.1.1", "no such mailbox"
		case mailboxv1.DeliveryStatus_DELIVERY_STATUS_REJECTED:
			st, text = "5.6.0", "message refused for this mailbox"
		}
		failed = append(failed, dsn.Recipient{Address: addr, Action: dsn.ActionFailed, Status: st, Diagnostic: text, LastAttempt: time.Now()})
	}
	if len(failed) == 0 {
		return
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	m := &store.QueuedMessage{ID: queueID, BlobKey: msg.BlobKey, MailFrom: h.MailFrom, BounceAccount: h.BounceAccountId,
		TraceID: h.TraceId, CreatedAt: time.Now()}
	if err := s.bounce(bctx, m, failed); err != nil {
		log.Error("a bounce for recipients who did not get a delivered message was not stored", "recipients", len(failed), "err", err)
	}
}

// sign returns the DKIM-Signature header field for the queued copy of a
// submitted message, signed with the key of its From domain (RFC 6376: the
// domain the signature vouches for, which DMARC aligns with From), or nil
// when that domain has no key. Only mail whose From domain is the envelope
// sender's is signed: the frontend has checked that the envelope sender
// belongs to the authenticated user, so a user cannot get another domain's
// signature on a forged From (and mail relayed from outside, such as
// forwards, is never signed). Signing problems are logged, never fatal: the
// message goes out unsigned rather than not at all.
func (s *service) sign(ctx context.Context, log *slog.Logger, msg *store.NewMessage, sp *spool, mailFrom string) []byte {
	if msg.Envelope == nil || len(msg.Envelope.From) != 1 || mailFrom == "" {
		return nil
	}
	domain := strings.ToLower(msg.Envelope.From[0].Host)
	if domain == "" || domain != store.Domain(mailFrom) {
		return nil
	}
	key := s.dkim.forDomain(ctx, domain)
	if key == nil {
		return nil
	}
	h, err := key.Sign(io.NewSectionReader(sp.ReaderAt(), 0, sp.size))
	if err != nil {
		log.Warn("DKIM signing failed; sending unsigned", "domain", domain, "err", err)
		return nil
	}
	return []byte(h)
}

// receive reads the header and the body chunks of a streamed message into a
// new spool.
func receive[Req any](s *service, recv func() (*Req, error), header func(*Req) (bool, []byte), announced func() int64) (*spool, error) {
	sp := &spool{max: s.cfg.MaxMessageSize, memLimit: s.cfg.MemorySpool, dir: s.cfg.SpoolDir}
	if a := announced(); a > s.cfg.MaxMessageSize {
		return nil, errTooBig
	}
	for {
		r, err := recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			sp.Close()
			return nil, err
		}
		isHeader, chunk := header(r)
		if isHeader {
			sp.Close()
			return nil, errNoHeader
		}
		if _, err := sp.Write(chunk); err != nil {
			sp.Close()
			return nil, err
		}
	}
	if a := announced(); a > 0 && a != sp.raw {
		sp.Close()
		return nil, errSizeMismatch
	}
	return sp, nil
}

// maxInternalDate is the latest internal date an append may set:
// 9999-12-31 23:59:59 UTC, the end of what IMAP's date-time can express.
const maxInternalDate = 253402300799

func (s *service) Append(stream grpc.ClientStreamingServer[mailboxv1.AppendRequest, mailboxv1.AppendResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		err = errNoHeader
	}
	if err != nil {
		return s.fail("Append", err)
	}
	h := first.GetHeader()
	if h == nil {
		return s.fail("Append", errNoHeader)
	}
	if err := account(ctx, h.AccountId); err != nil {
		return s.fail("Append", err)
	}
	if h.Size < 0 {
		return s.fail("Append", errSizeMismatch)
	}
	if h.InternalDate > maxInternalDate {
		return s.fail("Append", &store.InvalidError{Msg: "internal date is after the year 9999"})
	}
	sp, err := receive(s, stream.Recv, func(r *mailboxv1.AppendRequest) (bool, []byte) {
		return r.GetHeader() != nil, r.GetChunk()
	}, func() int64 { return h.Size })
	if err != nil {
		return s.fail("Append", err)
	}
	defer sp.Close()
	var date time.Time
	if h.InternalDate > 0 {
		date = time.Unix(h.InternalDate, 0)
	}
	name := h.MailboxName
	if name == "" {
		name = "INBOX"
	}
	// Check the mailbox before storing the body, so the common mistake
	// (APPEND to a missing mailbox: TRYCREATE) costs no upload. One indexed
	// lookup: a full STATUS would count the mailbox's messages every time.
	if _, err := s.store.MailboxID(ctx, h.AccountId, name); err != nil {
		return s.fail("Append", err)
	}
	msg, err := s.stage(ctx, sp, date)
	if err != nil {
		return s.fail("Append", err)
	}
	res, err := s.store.Deliver(ctx, msg, []store.Delivery{{Account: h.AccountId, Mailbox: name, Flags: h.Flags, Quota: h.Quota}})
	if err != nil {
		s.discardLost(msg, err)
		return s.fail("Append", err)
	}
	r := res[0]
	s.metrics.deliveries.WithLabelValues(r.Status.String()).Inc()
	switch r.Status {
	case mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK:
		return stream.SendAndClose(&mailboxv1.AppendResponse{UidValidity: r.UIDValidity, Uid: r.UID, MailboxId: r.MailboxID})
	case mailboxv1.DeliveryStatus_DELIVERY_STATUS_OVER_QUOTA:
		err = store.ErrOverQuota
	case mailboxv1.DeliveryStatus_DELIVERY_STATUS_NO_MAILBOX:
		err = store.ErrNotFound
	default:
		err = &store.InvalidError{Msg: r.Detail}
	}
	s.discard(msg)
	return s.fail("Append", err)
}

func (s *service) Deliver(stream grpc.ClientStreamingServer[mailboxv1.DeliverRequest, mailboxv1.DeliverResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		err = errNoHeader
	}
	if err != nil {
		return s.fail("Deliver", err)
	}
	h := first.GetHeader()
	if h == nil {
		return s.fail("Deliver", errNoHeader)
	}
	if len(h.Recipients) == 0 && len(h.RemoteRecipients) == 0 {
		return s.fail("Deliver", errNoRecipients)
	}
	if len(h.Recipients)+len(h.RemoteRecipients) > s.cfg.MaxRecipients {
		return s.fail("Deliver", errTooManyRcpt)
	}
	var queue *store.QueueEntry
	if len(h.RemoteRecipients) > 0 {
		queue = &store.QueueEntry{MailFrom: h.MailFrom, Recipients: h.RemoteRecipients, BounceAccount: h.BounceAccountId,
			Submitter: h.SubmitterAccountId, TraceID: h.TraceId, Lifetime: s.cfg.QueueLifetime}
	}
	log := s.log.With("trace", h.TraceId)
	sp, err := receive(s, stream.Recv, func(r *mailboxv1.DeliverRequest) (bool, []byte) {
		return r.GetHeader() != nil, r.GetChunk()
	}, func() int64 { return h.Size })
	if err != nil {
		return s.fail("Deliver", err)
	}
	defer sp.Close()
	t0 := time.Now()
	msg, err := s.stage(ctx, sp, time.Time{})
	if err != nil {
		return s.fail("Deliver", err)
	}
	t1 := time.Now()
	// The frontend names a bounce account only when the envelope sender is
	// the submitter's own address (its sender check passed).
	if queue != nil && h.SubmitterAccountId != "" && h.BounceAccountId == h.SubmitterAccountId {
		queue.Prepend = s.sign(ctx, log, msg, sp, h.MailFrom)
	}
	rcpts := make([]store.Delivery, len(h.Recipients))
	for i, r := range h.Recipients {
		rcpts[i] = store.Delivery{Account: r.AccountId, Mailbox: r.MailboxName, Flags: r.Flags, Quota: r.Quota}
	}
	res, queueID, err := s.store.DeliverAndQueue(ctx, msg, rcpts, queue)
	if err != nil {
		s.discardLost(msg, err)
		return s.fail("Deliver", err)
	}
	if queueID != 0 && s.queue != nil {
		s.queue.poke()
	}
	out := &mailboxv1.DeliverResponse{Size: sp.size, Results: make([]*mailboxv1.RecipientResult, len(res)), QueueId: queueID}
	ok := 0
	for i, r := range res {
		out.Results[i] = &mailboxv1.RecipientResult{Status: r.Status, UidValidity: r.UIDValidity, Uid: r.UID, Detail: r.Detail}
		if r.Status == mailboxv1.DeliveryStatus_DELIVERY_STATUS_OK {
			ok++
		}
	}
	if ok == 0 && queueID == 0 {
		s.discard(msg)
	} else {
		s.bounceLocal(ctx, log, msg, h, res, queueID)
	}
	for _, r := range res {
		s.metrics.deliveries.WithLabelValues(r.Status.String()).Inc()
	}
	log.Info("delivered", "key", msg.BlobKey, "size", sp.size, "recipients", len(res), "stored", ok,
		"queue_id", queueID, "remote", len(h.RemoteRecipients), "stage", t1.Sub(t0), "commit", time.Since(t1))
	return stream.SendAndClose(out)
}
