package imap

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// accountHeader is the gRPC metadata key naming the account a call acts
// for (mailbox.proto conventions).
const accountHeader = "x-mailcluster-account"

type mailboxKey struct {
	account string
	id      int64
}

// mailboxState is this frontend's view of one selected mailbox, shared by
// every session that has it selected: the UIDs present (the server view of
// sequence numbers) and the imapserver.MailboxTracker that gives each
// session its own view. It is updated only by sync, from the backend's
// Changes, so all sessions see the same order of events.
//
// Locking: mu guards uids, modseq and every call into the tracker and its
// session trackers (imapserver's trackers read the message count without
// their own lock). syncMu serialises syncs.
type mailboxState struct {
	srv      *Server
	key      mailboxKey
	mailHost string
	refs     int // guarded by srv.mu

	syncMu sync.Mutex

	mu          sync.Mutex
	uids        uidList // position+1 is the server sequence number
	modseq      uint64
	uidValidity uint32
	keywords    map[string]bool // for FLAGS
	meta        []msgMeta       // the message cache, aligned with uids (msgcache.go); nil: none
	metaBytes   int64           // what meta is counted as against Server.metaLeft
	released    bool            // no session uses the state: cache nothing more
	missed      uint64          // changes applied while meta was nil, and drops of meta (msgcache.go)
	stale       bool            // the last sync failed: the state may lack changes
	tracker     *imapserver.MailboxTracker

	kickMu  sync.Mutex
	running bool
	synced  chan struct{} // closed when running turns false
	dirty   bool
	force   bool   // a kick without a MODSEQ: sync whatever the state has seen
	want    uint64 // the highest MODSEQ kicked for
}

// acquire returns the shared state of a mailbox, creating it from sel when
// this frontend has no session on it yet. fresh reports a new state.
func (s *Server) acquire(account, mailHost string, sel *mailboxv1.SelectResponse) (mb *mailboxState, fresh bool) {
	key := mailboxKey{account, sel.Status.MailboxId}
	s.mu.Lock()
	defer s.mu.Unlock()
	if mb = s.mailboxes[key]; mb != nil && mb.uidValidity == sel.Status.UidValidity {
		mb.refs++
		return mb, false
	}
	mb = &mailboxState{srv: s, key: key, mailHost: mailHost, refs: 1,
		uids: uidListOf(sel.Uids), modseq: sel.Status.HighestModseq, uidValidity: sel.Status.UidValidity}
	mb.tracker = imapserver.NewMailboxTracker(mb.uids.len())
	mb.keywords = map[string]bool{}
	// The message cache is there from the start (if it fits), so that
	// every change applied is recorded in it, however soon after the
	// SELECT it comes.
	mb.metaLocked()
	for _, k := range sel.Keywords {
		mb.keywords[k] = true
	}
	s.mailboxes[key] = mb
	s.metrics.mailboxes.Set(float64(len(s.mailboxes)))
	return mb, true
}

// release drops a session's reference; the last one stops following it.
func (s *Server) release(mb *mailboxState) {
	s.mu.Lock()
	mb.refs--
	last := mb.refs == 0
	if last && s.mailboxes[mb.key] == mb {
		delete(s.mailboxes, mb.key)
		s.metrics.mailboxes.Set(float64(len(s.mailboxes)))
	}
	s.mu.Unlock()
	if last {
		s.watch.remove(mb)
		mb.releaseMeta()
	}
}

// uidSetOf compresses ascending UIDs into backend ranges.
func uidSetOf(uids []uint32) *mailboxv1.UIDSet {
	set := &mailboxv1.UIDSet{}
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		set.Ranges = append(set.Ranges, &mailboxv1.UIDRange{Start: uids[i], End: uids[j]})
		i = j + 1
	}
	return set
}

// inSet reports whether uid is in a backend set (end 0 is "*").
func inSet(set *mailboxv1.UIDSet, uid uint32) bool {
	for _, r := range set.GetRanges() {
		end := r.End
		if end == 0 {
			end = ^uint32(0)
		}
		if uid >= r.Start && uid <= end {
			return true
		}
	}
	return false
}

// seqOf returns the server sequence number of uid, or 0. mu must be held.
func (mb *mailboxState) seqOf(uid uint32) uint32 {
	return mb.uids.seqOf(uid)
}

// flagsLocked lists the system flags and the keywords in use (FLAGS).
func (mb *mailboxState) flagsLocked() []imap.Flag {
	flags := []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}
	kws := make([]string, 0, len(mb.keywords))
	for k := range mb.keywords {
		kws = append(kws, k)
	}
	slices.Sort(kws)
	for _, k := range kws {
		flags = append(flags, imap.Flag(k))
	}
	return flags
}

// kickNewer kicks unless the state has already seen modseq (MODSEQs are
// per account, so an event at or below the mailbox's own is old news: often
// this frontend's own change, already applied before its tagged OK). The
// check is made again when the sync is about to run, so an event that
// overtook the applying of this frontend's own change costs no call.
func (mb *mailboxState) kickNewer(modseq uint64) {
	mb.mu.Lock()
	seen := modseq != 0 && modseq <= mb.modseq
	mb.mu.Unlock()
	if !seen {
		mb.kickFor(modseq)
	}
}

// kick asks for a sync soon; kicks while one runs coalesce into one more.
func (mb *mailboxState) kick() { mb.kickFor(0) }

// kickFor asks for a sync that brings the state to at least modseq (0:
// a sync in any case).
func (mb *mailboxState) kickFor(modseq uint64) {
	mb.kickMu.Lock()
	if modseq == 0 {
		mb.force = true
	}
	mb.want = max(mb.want, modseq)
	if mb.running {
		mb.dirty = true
		mb.kickMu.Unlock()
		return
	}
	mb.running = true
	mb.synced = make(chan struct{})
	mb.kickMu.Unlock()
	go func() {
		for {
			mb.kickMu.Lock()
			force, want := mb.force, mb.want
			mb.force, mb.want = false, 0
			mb.kickMu.Unlock()
			ctx, cancel := context.WithTimeout(mb.srv.ctx, mb.srv.cfg.RPCTimeout)
			var err error
			if force || !mb.seenAfterSync(want) {
				err = mb.sync(ctx, nil, nil)
			}
			if err != nil {
				mb.srv.metrics.resyncs.WithLabelValues("failed").Inc()
			}
			if err != nil && mb.srv.ctx.Err() == nil {
				level := slog.LevelWarn
				if status.Code(err) == codes.NotFound {
					level = slog.LevelDebug // deleted while selected: commands now say NONEXISTENT
				}
				mb.srv.log.Log(ctx, level, "imap: mailbox resync failed", "account", mb.key.account, "mailbox", mb.key.id, "err", err)
			}
			cancel()
			mb.kickMu.Lock()
			if !mb.dirty {
				mb.running = false
				close(mb.synced)
				mb.kickMu.Unlock()
				return
			}
			mb.dirty = false
			mb.kickMu.Unlock()
		}
	}()
}

// seenAfterSync reports whether the state has seen modseq once the sync
// or applyOwn in progress, if any, is done.
func (mb *mailboxState) seenAfterSync(modseq uint64) bool {
	mb.syncMu.Lock()
	defer mb.syncMu.Unlock()
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return modseq <= mb.modseq
}

// client routes the mailbox's account and returns a context carrying the
// account header.
func (mb *mailboxState) client(ctx context.Context) (mailboxv1.MailboxClient, context.Context, error) {
	c, err := mb.srv.deps.Router.Route(mb.key.account, mb.mailHost)
	if err != nil {
		return nil, nil, err
	}
	return c, metadata.AppendToOutgoingContext(ctx, accountHeader, mb.key.account), nil
}

// sync brings the state up to date with the backend and queues EXISTS,
// EXPUNGE and FETCH FLAGS for every session. Flag changes of the UIDs in
// quiet are not queued for source, which has already answered them.
func (mb *mailboxState) sync(ctx context.Context, source *imapserver.SessionTracker, quiet []uint32) (err error) {
	mb.syncMu.Lock()
	defer mb.syncMu.Unlock()
	defer func() {
		// A state that failed to catch up does not answer from its cache
		// (msgcache.go) until a sync succeeds.
		mb.mu.Lock()
		mb.stale = err != nil
		mb.mu.Unlock()
	}()
	mb.mu.Lock()
	since := mb.modseq
	mb.mu.Unlock()

	c, cctx, err := mb.client(ctx)
	if err != nil {
		return err
	}
	stream, err := c.Changes(cctx, &mailboxv1.ChangesRequest{AccountId: mb.key.account, MailboxId: mb.key.id, SinceModseq: since})
	if err != nil {
		mb.srv.unreachable(c, err)
		return err
	}
	var (
		st        *mailboxv1.MailboxStatus
		changed   []*mailboxv1.MessageMeta
		vanished  []*mailboxv1.UIDRange
		truncated bool
	)
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			mb.srv.unreachable(c, err)
			return err
		}
		if r.Status != nil {
			st = r.Status
		}
		changed = append(changed, r.Changed...)
		vanished = append(vanished, r.Vanished.GetRanges()...)
		truncated = truncated || r.ExpungeLogTruncated
	}
	if st == nil {
		return nil
	}
	if truncated {
		return mb.fullSync(ctx, c, cctx, since, st)
	}
	mb.srv.metrics.resyncs.WithLabelValues("changes").Inc()
	mb.apply(&mailboxv1.UIDSet{Ranges: vanished}, changed, st.HighestModseq, source, quiet)
	mb.mu.Lock()
	consistent := mb.uids.len() == st.Messages
	mb.mu.Unlock()
	if !consistent {
		// Changes and the status were not one snapshot (a change landed
		// in between) or the log missed something: compare UID lists.
		return mb.fullSync(ctx, c, cctx, since, nil)
	}
	return nil
}

// applyOwn brings the state up to date after a change this frontend made
// itself (STORE, EXPUNGE) at modseq, without a Changes call when it can:
// MODSEQs are given out per account in commit order, so when the state has
// seen modseq-1 the change is the only one it has not seen, and its result
// (the changed messages with their new flags, the expunged UIDs) is all
// there is to apply. Otherwise (another change came in between, possibly in
// another mailbox of the account) it syncs. modseq 0: nothing changed.
func (mb *mailboxState) applyOwn(ctx context.Context, modseq uint64, vanished []uint32, changed []*mailboxv1.MessageMeta, source *imapserver.SessionTracker, quiet []uint32) error {
	mb.syncMu.Lock()
	mb.mu.Lock()
	cur := mb.modseq
	mb.mu.Unlock()
	if modseq == 0 || modseq <= cur {
		// Nothing changed, or a sync has already applied the change.
		mb.syncMu.Unlock()
		return nil
	}
	if modseq-1 <= cur {
		mb.srv.metrics.resyncs.WithLabelValues("own").Inc()
		mb.apply(uidSetOf(vanished), changed, modseq, source, quiet)
		mb.syncMu.Unlock()
		return nil
	}
	mb.syncMu.Unlock()
	return mb.sync(ctx, source, quiet)
}

// applyAppended applies a delivery the Watch event reported with its
// message (WatchEvent.appended), without a Changes call, when that is the
// only change the state has not seen: as for applyOwn, MODSEQs are given
// out per account in commit order, so a state at the message's MODSEQ-1
// has seen everything before it. It reports false, having done nothing,
// when the caller must sync instead: an older state, a sync in progress
// (it will catch up itself), a state whose last sync failed, or a message
// that is not new.
func (mb *mailboxState) applyAppended(m *mailboxv1.MessageMeta) bool {
	if !mb.syncMu.TryLock() {
		return false
	}
	defer mb.syncMu.Unlock()
	mb.mu.Lock()
	ok := !mb.stale && m.Modseq > 0 && m.Modseq-1 == mb.modseq && m.Uid > mb.uids.last()
	mb.mu.Unlock()
	if !ok {
		return false
	}
	mb.srv.metrics.resyncs.WithLabelValues("event").Inc()
	mb.apply(&mailboxv1.UIDSet{}, []*mailboxv1.MessageMeta{m}, m.Modseq, nil, nil)
	return true
}

// fullSync compares the UID list with the backend's (Fetch of 1:*, flags
// only) when the expunge log cannot tell what vanished.
func (mb *mailboxState) fullSync(ctx context.Context, c mailboxv1.MailboxClient, cctx context.Context, since uint64, st *mailboxv1.MailboxStatus) error {
	mb.srv.metrics.resyncs.WithLabelValues("full").Inc()
	stream, err := c.Fetch(cctx, &mailboxv1.FetchRequest{AccountId: mb.key.account, MailboxId: mb.key.id,
		Uids: &mailboxv1.UIDSet{Ranges: []*mailboxv1.UIDRange{{Start: 1, End: 0}}}, BatchSize: uint32(mb.srv.cfg.FetchBatch)})
	if err != nil {
		return err
	}
	var present []uint32
	var changed []*mailboxv1.MessageMeta
	var top uint64
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		for _, m := range r.Messages {
			present = append(present, m.Uid)
			top = max(top, m.Modseq)
			if m.Modseq > since {
				changed = append(changed, m)
			}
		}
	}
	if st != nil {
		top = max(top, st.HighestModseq)
	}
	mb.mu.Lock()
	var gone []uint32
	mb.uids.each(func(_, u uint32) {
		if _, ok := slices.BinarySearch(present, u); !ok {
			gone = append(gone, u)
		}
	})
	mb.mu.Unlock()
	mb.apply(uidSetOf(gone), changed, top, nil, nil)
	return nil
}

// apply queues the updates: expunges first (highest sequence number first,
// so each number is valid when sent), then new messages one EXISTS at a
// time (the trackers' sequence-number mapping needs single increments), then
// flag changes.
func (mb *mailboxState) apply(vanished *mailboxv1.UIDSet, changed []*mailboxv1.MessageMeta, modseq uint64, source *imapserver.SessionTracker, quiet []uint32) {
	sort.Slice(changed, func(i, j int) bool { return changed[i].Uid < changed[j].Uid })
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.meta == nil && (len(changed) > 0 || len(vanished.GetRanges()) > 0) {
		mb.missed++ // rows fetched before this change may not fill a cache
	}
	if len(vanished.GetRanges()) > 0 {
		var uids []uint32
		expunged := mb.uids.removeIf(func(u uint32) bool {
			if inSet(vanished, u) {
				uids = append(uids, u)
				return true
			}
			return false
		})
		for i := len(expunged) - 1; i >= 0; i-- {
			mb.tracker.QueueExpungeUID(expunged[i], imap.UID(uids[i]))
		}
		mb.removeMetaLocked(expunged)
	}
	grown := false
	for _, m := range changed {
		for _, k := range m.Flags.GetKeywords() {
			if !mb.keywords[k] {
				mb.keywords[k], grown = true, true
			}
		}
	}
	if grown {
		// A new keyword: FLAGS again, before the FETCH that shows it.
		mb.tracker.QueueMailboxFlags(mb.flagsLocked())
	}
	for _, m := range changed {
		if inSet(vanished, m.Uid) {
			continue
		}
		switch {
		case m.Uid > mb.uids.last():
			mb.uids.push(m.Uid)
			mb.pushMetaLocked()
			mb.tracker.QueueNumMessages(mb.uids.len())
			mb.noteLocked(m.Uid, m.Flags, m.Modseq, false, 0, 0)
		default:
			seq := mb.seqOf(m.Uid)
			if seq == 0 {
				continue
			}
			mb.noteLocked(m.Uid, m.Flags, m.Modseq, false, 0, 0)
			src := (*imapserver.SessionTracker)(nil)
			if _, ok := slices.BinarySearch(quiet, m.Uid); ok {
				src = source
			}
			mb.tracker.QueueMessageFlagsModSeq(seq, imap.UID(m.Uid), flagsFromProto(m.Flags), m.Modseq, src)
		}
	}
	mb.modseq = max(mb.modseq, modseq)
}
