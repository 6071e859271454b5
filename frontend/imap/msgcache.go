package imap

import (
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// The message cache: what a mailboxState knows of each message (flags,
// MODSEQ, size, INTERNALDATE and the rendered ENVELOPE), so that the FETCH
// of a client's resync (FLAGS, ENVELOPE, RFC822.SIZE, INTERNALDATE of 1:*)
// and a SEARCH on flags, dates and sizes are answered by the frontend
// without a backend call.
//
// The entries are a slice aligned with the state's UID list (entry i is
// sequence number i+1 of the server view), so that answering for a whole
// mailbox reads memory in order. An entry is filled from the rows of a
// backend Fetch, and every change the state applies (apply: the backend's
// Changes, this frontend's own STORE and EXPUNGE results) updates it; a
// body read that set \Seen updates it too. A message's MODSEQ grows with
// every change of its flags, so of two views of one message the one with
// the higher MODSEQ is the newer, whatever the order they arrive in
// (noteLocked). Size, INTERNALDATE and ENVELOPE never change.
//
// The state answers from the cache only while it is current: the Watch
// stream is open, no resynchronisation of the mailbox is running or pending
// (a command waits up to syncWait for one), and the last one did not fail
// (stale). It then shows every change whose event has reached this
// frontend, which is what NOOP and IDLE show too; this session's own
// changes are applied before their tagged OK.
//
// Memory is counted against Config.MessageCache over all mailboxes of the
// Server: metaSlot bytes per message of a cached mailbox, reserved when the
// state is created, plus each ENVELOPE kept. A mailbox whose entries do not fit has none (and answers from
// the backend as before); a cache that stops fitting as the mailbox grows
// is dropped whole.

// msgMeta is one message's cached metadata.
type msgMeta struct {
	kw     []string // keywords; shared, never modified
	env    []byte   // rendered ENVELOPE; shared, never modified
	modseq uint64
	date   int64 // INTERNALDATE, Unix seconds; valid when full
	size   int64 // RFC822.SIZE; valid when full
	sys    uint32
	known  bool // flags and modseq are set
	full   bool // size and date too (Changes carries flags only)
}

// metaSlot is what one entry is counted as (the struct and the slice's
// spare capacity).
const metaSlot = 96

// sysFlagLists holds the rendered flag lists of every combination of the
// five system flags, so that writing FLAGS allocates nothing when a
// message has no keywords. Written once, read only.
var sysFlagLists = func() (out [64][]imap.Flag) {
	for bits := range out {
		out[bits] = flagsFromProto(&mailboxv1.Flags{System: uint32(bits)})
	}
	return out
}()

// flags returns the message's flags for a FETCH response.
func (e *msgMeta) flags() []imap.Flag {
	if len(e.kw) == 0 && e.sys < uint32(len(sysFlagLists)) {
		return sysFlagLists[e.sys]
	}
	return flagsFromProto(&mailboxv1.Flags{System: e.sys, Keywords: e.kw})
}

// syncWait is how long a command waits for a resynchronisation in progress
// before it answers from the backend instead of the cache: one usually
// takes a millisecond, and on a busy mailbox one starts after every change.
// A variable for tests.
var syncWait = 20 * time.Millisecond

// current reports whether the state may answer for the backend (see the
// comment at the top of this file), waiting up to syncWait for a
// resynchronisation in progress.
func (mb *mailboxState) current() bool {
	if mb.srv.cfg.MessageCache == 0 || !mb.srv.watch.healthy.Load() {
		return false
	}
	mb.kickMu.Lock()
	running, synced := mb.running, mb.synced
	mb.kickMu.Unlock()
	if running {
		t := time.NewTimer(syncWait)
		defer t.Stop()
		select {
		case <-synced:
		case <-t.C:
			return false
		}
		mb.kickMu.Lock()
		running = mb.running
		mb.kickMu.Unlock()
		if running {
			return false // another one began: the backend answers
		}
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return !mb.stale
}

// charge takes n bytes of the budget, or reports that they do not fit.
func (s *Server) charge(n int64) bool {
	if s.metaLeft.Add(-n) < 0 {
		s.metaLeft.Add(n)
		return false
	}
	return true
}

// metaLocked returns the entries, allocating them when the budget allows;
// nil when it does not or the state is released. mu must be held.
func (mb *mailboxState) metaLocked() []msgMeta {
	if mb.meta == nil && !mb.released && mb.srv.cfg.MessageCache > 0 {
		n := int64(mb.uids.len())
		if mb.srv.charge(n * metaSlot) {
			mb.meta, mb.metaBytes = make([]msgMeta, n), n*metaSlot
		}
	}
	return mb.meta
}

// dropMetaLocked gives the state's entries back to the budget. mu must be
// held.
func (mb *mailboxState) dropMetaLocked() {
	mb.srv.metaLeft.Add(mb.metaBytes)
	mb.meta, mb.metaBytes = nil, 0
	mb.missed++
}

// fetchGen is what noteRows is given for the rows of a backend Fetch
// started now.
func (mb *mailboxState) fetchGen() uint64 {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.missed
}

// pushMetaLocked adds the entry of a message appended to the UID list.
func (mb *mailboxState) pushMetaLocked() {
	if mb.meta == nil {
		return
	}
	if !mb.srv.charge(metaSlot) {
		mb.dropMetaLocked()
		return
	}
	mb.metaBytes += metaSlot
	mb.meta = append(mb.meta, msgMeta{})
}

// removeMetaLocked drops the entries at the 1-based positions gone
// (ascending), as uidList.removeIf did.
func (mb *mailboxState) removeMetaLocked(gone []uint32) {
	if mb.meta == nil || len(gone) == 0 {
		return
	}
	var freed int64
	out, k := mb.meta[:0], 0
	for i := range mb.meta {
		if k < len(gone) && uint32(i+1) == gone[k] {
			k++
			freed += metaSlot + int64(len(mb.meta[i].env))
			continue
		}
		out = append(out, mb.meta[i])
	}
	clear(mb.meta[len(out):]) // let go of keywords and envelopes
	mb.meta = out
	mb.metaBytes -= freed
	mb.srv.metaLeft.Add(freed)
}

// release gives everything back when no session uses the state any more;
// nothing is recorded in it afterwards.
func (mb *mailboxState) releaseMeta() {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.released = true
	mb.dropMetaLocked()
}

// noteLocked records what the backend says of message uid at modseq: the
// flags when they are newer than the entry's, and the size and date when
// full. A UID the state does not list is not recorded. mu must be held.
func (mb *mailboxState) noteLocked(uid uint32, flags *mailboxv1.Flags, modseq uint64, full bool, size, date int64) {
	if mb.meta == nil {
		return
	}
	seq := mb.seqOf(uid)
	if seq == 0 {
		return
	}
	e := &mb.meta[seq-1]
	if !e.known || modseq > e.modseq {
		e.sys, e.kw, e.modseq, e.known = flags.GetSystem(), flags.GetKeywords(), modseq, true
	}
	if full && !e.full {
		e.full, e.size, e.date = true, size, date
	}
}

// noteEnvLocked keeps the rendered ENVELOPE of uid, if it fits.
func (mb *mailboxState) noteEnvLocked(uid uint32, env []byte) {
	if mb.meta == nil || env == nil {
		return
	}
	seq := mb.seqOf(uid)
	if seq == 0 || mb.meta[seq-1].env != nil || !mb.srv.charge(int64(len(env))) {
		return
	}
	mb.meta[seq-1].env = env
	mb.metaBytes += int64(len(env))
}

// noteRows records the rows of a backend Fetch, full when the request
// asked for sizes and dates, with the ENVELOPEs written for them (envs
// aligned with ms, or nil). gen is fetchGen from before the call: when a
// change was applied meanwhile without a cache to record it in (or the
// cache was dropped), the rows may predate it and are not recorded, since
// nothing newer would correct them.
func (mb *mailboxState) noteRows(gen uint64, ms []*mailboxv1.MessageMeta, full bool, envs [][]byte) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if gen != mb.missed || mb.metaLocked() == nil {
		return
	}
	for i, m := range ms {
		mb.noteLocked(m.Uid, m.Flags, m.Modseq, full, m.Size, m.InternalDate)
		if envs != nil {
			mb.noteEnvLocked(m.Uid, envs[i])
		}
	}
}

// noteFlags records new flags a body read set (\Seen).
func (mb *mailboxState) noteFlags(uid uint32, flags *mailboxv1.Flags, modseq uint64) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if seq := mb.seqOf(uid); mb.meta != nil && seq != 0 && mb.meta[seq-1].known {
		mb.noteLocked(uid, flags, modseq, false, 0, 0)
	}
}

// cachedFetch reports whether a FETCH with options can be answered from
// the cache: only items the cache holds.
func cachedFetch(o *imap.FetchOptions) bool {
	return o.BodyStructure == nil && len(o.BodySection)+len(o.BinarySection)+len(o.BinarySectionSize) == 0
}

// hit is a target answered from the cache.
type hit struct {
	target
	meta msgMeta
}

// hitChunk is how many messages fetchCached copies out of the cache at a
// time, under the mailbox's lock, before writing them without it.
const hitChunk = 256

// hitBufs recycles the copies.
var hitBufs = sync.Pool{New: func() any { return new([hitChunk]hit) }}

// fetchCached writes the FETCH responses of the targets the cache answers
// and returns the others (ascending by UID), all of them when the state is
// not current. An ENVELOPE not yet in an entry is taken from the envelope
// cache when it is there (and kept in the entry).
func (ss *session) fetchCached(w *imapserver.FetchWriter, targets []target, options *imap.FetchOptions) (misses []target, err error) {
	mb := ss.sel.Load().mb
	if !cachedFetch(options) || !mb.current() {
		return targets, nil
	}
	needFull := options.InternalDate || options.RFC822Size
	buf := hitBufs.Get().(*[hitChunk]hit)
	defer func() {
		clear(buf[:]) // let go of keywords and envelopes
		hitBufs.Put(buf)
	}()
	written := 0
	defer func() { ss.srv.metrics.cached.WithLabelValues("fetch").Add(float64(written)) }()
	for len(targets) > 0 {
		n, envMiss := 0, false
		mb.mu.Lock()
		if mb.meta == nil || mb.stale || !mb.srv.watch.healthy.Load() {
			// Dropped, or no longer current while earlier pieces were
			// written: the backend answers for the rest.
			mb.mu.Unlock()
			misses = append(misses, targets...)
			break
		}
		k := 0
		for ; k < len(targets) && n < hitChunk; k++ {
			t := targets[k]
			seq := mb.seqOf(t.uid)
			if seq == 0 {
				continue // expunged; as the backend, which finds no row
			}
			e := &mb.meta[seq-1]
			if !e.known || (needFull && !e.full) {
				misses = append(misses, t)
				continue
			}
			if options.ChangedSince != 0 && e.modseq <= options.ChangedSince {
				continue
			}
			envMiss = envMiss || (options.Envelope && e.env == nil)
			buf[n] = hit{target: t, meta: *e}
			n++
		}
		mb.mu.Unlock()
		targets = targets[k:]
		hits := buf[:n]
		if envMiss {
			hits = ss.envelopesFor(mb, hits, &misses)
		}
		for i := range hits {
			if err := writeCached(w, &hits[i], options); err != nil {
				return nil, err
			}
		}
		written += len(hits)
	}
	// fetchChunk matches the backend's rows (in UID order) to its targets
	// in one pass.
	slices.SortFunc(misses, func(a, b target) int { return int(int64(a.uid) - int64(b.uid)) })
	return misses, nil
}

// envelopesFor fills in the ENVELOPEs hits lack from the envelope cache,
// keeping them in the message cache; a hit whose ENVELOPE is in neither
// becomes a miss. It returns the hits that remain.
func (ss *session) envelopesFor(mb *mailboxState, hits []hit, misses *[]target) []hit {
	kept := hits[:0]
	var found []int
	for i := range hits {
		h := hits[i]
		if h.meta.env == nil {
			h.meta.env = ss.srv.envelopes.get(envelopeKey{mb.key.account, mb.key.id, mb.uidValidity, h.uid})
			if h.meta.env == nil {
				*misses = append(*misses, h.target)
				continue
			}
			found = append(found, len(kept))
		}
		kept = append(kept, h)
	}
	if len(found) > 0 {
		mb.mu.Lock()
		for _, i := range found {
			mb.noteEnvLocked(kept[i].uid, kept[i].meta.env)
		}
		mb.mu.Unlock()
	}
	return kept
}

// writeCached writes the FETCH response of a cache hit, with the items in
// the order writeMessage writes them (FetchWriter.WriteItems).
func writeCached(w *imapserver.FetchWriter, h *hit, options *imap.FetchOptions) error {
	it := imapserver.FetchItems{
		WithUID: options.UID, UID: imap.UID(h.uid),
		WithFlags: options.Flags, WithModSeq: options.ModSeq, ModSeq: h.meta.modseq,
		WithInternalDate: options.InternalDate, WithRFC822Size: options.RFC822Size, RFC822Size: h.meta.size,
	}
	if options.Flags {
		it.Flags = h.meta.flags()
	}
	if options.InternalDate {
		it.InternalDate = time.Unix(h.meta.date, 0)
	}
	if options.Envelope {
		it.Envelope = h.meta.env
	}
	return w.WriteItems(h.seq, &it)
}

// maxLocalKeys and maxLocalRanges bound the keys and the UID ranges of a
// whole criteria tree that searchCached evaluates itself, under the
// mailbox's lock, for every message: at most 64 steps a message. Larger
// criteria go to the backend, which has its own limits (max-search-keys,
// max-uid-ranges).
const (
	maxLocalKeys   = 32
	maxLocalRanges = 32
)

// localKey reports whether the cache can evaluate k (flags, UIDs, MODSEQ,
// INTERNALDATE and size; not headers, bodies or sent dates) within
// maxLocalKeys and maxLocalRanges, and whether it needs sizes and dates.
func localKey(k *mailboxv1.SearchKey) (ok, needFull bool) {
	var keys, ranges int
	return localKeyIn(k, &keys, &ranges)
}

func localKeyIn(k *mailboxv1.SearchKey, keys, ranges *int) (ok, needFull bool) {
	if *keys++; k == nil || *keys > maxLocalKeys {
		return false, false
	}
	switch k.Op {
	case mailboxv1.SearchKey_OP_ALL, mailboxv1.SearchKey_OP_MODSEQ:
		return true, false
	case mailboxv1.SearchKey_OP_FLAG, mailboxv1.SearchKey_OP_NO_FLAG:
		return k.Text != "" || (k.Number != 0 && k.Number&^uint64(0x1f) == 0), false
	case mailboxv1.SearchKey_OP_BEFORE, mailboxv1.SearchKey_OP_SINCE, mailboxv1.SearchKey_OP_LARGER, mailboxv1.SearchKey_OP_SMALLER:
		return true, true
	case mailboxv1.SearchKey_OP_UID:
		if *ranges += len(k.Uids.GetRanges()); *ranges > maxLocalRanges {
			return false, false
		}
		for _, r := range k.Uids.GetRanges() {
			if r.End == 0 || r.End < r.Start {
				return false, false
			}
		}
		return true, false
	case mailboxv1.SearchKey_OP_AND, mailboxv1.SearchKey_OP_OR, mailboxv1.SearchKey_OP_NOT:
		// A node without children is the backend's to refuse.
		if len(k.Children) == 0 || (k.Op == mailboxv1.SearchKey_OP_NOT && len(k.Children) != 1) {
			return false, false
		}
		for _, c := range k.Children {
			cok, cfull := localKeyIn(c, keys, ranges)
			if !cok {
				return false, false
			}
			needFull = needFull || cfull
		}
		return true, needFull
	}
	return false, false
}

// matchLocal evaluates a key localKey accepted against one message, as
// the backend's SQL does (store/search.go).
func matchLocal(k *mailboxv1.SearchKey, uid uint32, e *msgMeta) bool {
	switch k.Op {
	case mailboxv1.SearchKey_OP_ALL:
		return true
	case mailboxv1.SearchKey_OP_AND:
		for _, c := range k.Children {
			if !matchLocal(c, uid, e) {
				return false
			}
		}
		return true
	case mailboxv1.SearchKey_OP_OR:
		for _, c := range k.Children {
			if matchLocal(c, uid, e) {
				return true
			}
		}
		return false
	case mailboxv1.SearchKey_OP_NOT:
		return !matchLocal(k.Children[0], uid, e)
	case mailboxv1.SearchKey_OP_UID:
		return inSet(k.Uids, uid)
	case mailboxv1.SearchKey_OP_FLAG, mailboxv1.SearchKey_OP_NO_FLAG:
		has := e.sys&uint32(k.Number) != 0
		if k.Text != "" {
			has = slices.Contains(e.kw, k.Text)
		}
		return has == (k.Op == mailboxv1.SearchKey_OP_FLAG)
	case mailboxv1.SearchKey_OP_BEFORE:
		return e.date < k.Time
	case mailboxv1.SearchKey_OP_SINCE:
		return e.date >= k.Time
	case mailboxv1.SearchKey_OP_LARGER:
		return uint64(e.size) > k.Number
	case mailboxv1.SearchKey_OP_SMALLER:
		return uint64(e.size) < k.Number
	case mailboxv1.SearchKey_OP_MODSEQ:
		return e.modseq >= k.Number
	}
	return false
}

// searchCached evaluates key over every message of the mailbox from the
// cache, calling found with each match's UID and server sequence number
// (ascending, under mu), and returns the highest MODSEQ of the matches. ok
// is false, with found not called, when the state is not current, the key
// needs the backend, or a message is not cached.
func (mb *mailboxState) searchCached(key *mailboxv1.SearchKey, found func(uid, seq uint32)) (highest uint64, ok bool) {
	local, needFull := localKey(key)
	if !local || !mb.current() {
		return 0, false
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.meta == nil {
		return 0, false
	}
	for i := range mb.meta {
		if e := &mb.meta[i]; !e.known || (needFull && !e.full) {
			return 0, false
		}
	}
	mb.uids.each(func(i, uid uint32) {
		if e := &mb.meta[i]; matchLocal(key, uid, e) {
			found(uid, i+1)
			highest = max(highest, e.modseq)
		}
	})
	return highest, true
}
