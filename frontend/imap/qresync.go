package imap

import (
	"context"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

var _ imapserver.SessionQResync = (*session)(nil)

// changes is what the backend's Changes reports after a MODSEQ.
type changes struct {
	vanished  *mailboxv1.UIDSet
	changed   []*mailboxv1.MessageMeta
	truncated bool   // the expunge log no longer reaches back that far
	uidNext   uint32 // of the mailbox, from the status
}

// changesSince asks the backend what changed in the selected mailbox after
// modseq; known limits the vanished UIDs (nil: all).
func (ss *session) changesSince(sel *selection, modseq uint64, known *mailboxv1.UIDSet) (*changes, error) {
	return call(ss, true, func(ctx context.Context, c mailboxv1.MailboxClient) (*changes, error) {
		stream, err := c.Changes(ctx, &mailboxv1.ChangesRequest{AccountId: ss.acct.ID, MailboxId: sel.mb.key.id,
			SinceModseq: modseq, KnownUids: known})
		if err != nil {
			return nil, err
		}
		out := &changes{vanished: &mailboxv1.UIDSet{}}
		for {
			r, err := stream.Recv()
			if err == io.EOF {
				return out, nil
			}
			if err != nil {
				return nil, err
			}
			if r.Status != nil {
				out.uidNext = r.Status.UidNext
			}
			out.changed = append(out.changed, r.Changed...)
			out.vanished.Ranges = append(out.vanished.Ranges, r.Vanished.GetRanges()...)
			out.truncated = out.truncated || r.ExpungeLogTruncated
		}
	})
}

// protoSet converts a static UID set ("*" is the highest UID present).
func protoSet(set imap.UIDSet, last uint32) *mailboxv1.UIDSet {
	out := &mailboxv1.UIDSet{}
	for _, r := range set {
		start, stop := span(uint32(r.Start), uint32(r.Stop), last)
		out.Ranges = append(out.Ranges, &mailboxv1.UIDRange{Start: start, End: stop})
	}
	return out
}

// vanishedOf lists the UIDs in known that the client may still believe in
// but are gone: the backend's vanished set (already limited to known), or,
// when its expunge log was truncated, every known UID below UIDNEXT that
// is not present (RFC 7162 section 3.2.5.2 lets a server report UIDs that
// never existed). The result is ranges: its size does not depend on the
// client's set.
func (ss *session) vanishedOf(sel *selection, ch *changes, known *mailboxv1.UIDSet) imap.UIDSet {
	var out imap.UIDSet
	if !ch.truncated {
		for _, r := range ch.vanished.GetRanges() {
			out.AddRange(imap.UID(r.Start), imap.UID(max(r.End, r.Start)))
		}
		return out
	}
	if ch.uidNext <= 1 {
		return out
	}
	top := ch.uidNext - 1
	sel.mb.mu.Lock()
	defer sel.mb.mu.Unlock()
	for _, k := range known.GetRanges() {
		cur, end := max(k.Start, 1), min(k.End, top)
		for i := sel.mb.uids.lowerBound(cur); cur <= end; i++ {
			if i >= sel.mb.uids.len() || sel.mb.uids.at(i) > end {
				out.AddRange(imap.UID(cur), imap.UID(end))
				break
			}
			if u := sel.mb.uids.at(i); u > cur {
				out.AddRange(imap.UID(cur), imap.UID(u-1))
			}
			cur = sel.mb.uids.at(i) + 1
		}
	}
	return out
}

// ResyncSelected answers SELECT/EXAMINE (QRESYNC ...): with a matching
// UIDVALIDITY, VANISHED (EARLIER) for what was expunged after the client's
// MODSEQ and FETCH (UID FLAGS MODSEQ) for every message changed since.
// The sequence-match data is not used (it only narrows what is sent).
func (ss *session) ResyncSelected(w *imapserver.FetchWriter, q *imap.SelectQResync) (err error) {
	defer ss.track("qresync", &err)()
	sel := ss.sel.Load()
	if sel == nil || q.UIDValidity != sel.mb.uidValidity {
		return nil
	}
	sel.mb.mu.Lock()
	last := sel.mb.uids.last()
	sel.mb.mu.Unlock()
	known := &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: 1, End: max(last, 1)}}}
	if q.KnownUIDs != nil {
		known = protoSet(q.KnownUIDs, last)
	}
	ch, err := ss.changesSince(sel, q.ModSeq, known)
	if err != nil {
		return ss.fail("qresync", err, nil)
	}
	if err := w.WriteVanished(ss.vanishedOf(sel, ch, known)); err != nil {
		return err
	}
	for _, m := range ch.changed {
		seq := ss.seqOfUID(m.Uid)
		if seq == 0 {
			continue
		}
		rw := w.CreateMessage(seq)
		rw.WriteUID(imap.UID(m.Uid))
		rw.WriteFlags(flagsFromProto(m.Flags))
		rw.WriteModSeq(m.Modseq)
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// fetchVanished writes VANISHED (EARLIER) for UID FETCH (CHANGEDSINCE n
// VANISHED): the UIDs of the set expunged after n (RFC 7162 section
// 3.2.6).
func (ss *session) fetchVanished(w *imapserver.FetchWriter, numSet imap.NumSet, since uint64) error {
	sel := ss.sel.Load()
	set, ok := numSet.(imap.UIDSet)
	if !ok || imap.IsSearchRes(set) {
		return nil
	}
	sel.mb.mu.Lock()
	last := sel.mb.uids.last()
	sel.mb.mu.Unlock()
	known := protoSet(set, last)
	ch, err := ss.changesSince(sel, since, known)
	if err != nil {
		return ss.fail("fetch vanished", err, nil)
	}
	return w.WriteVanished(ss.vanishedOf(sel, ch, known))
}
