package imap

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"google.golang.org/grpc/metadata"

	"mailcluster/directory"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

// session is one IMAP connection. imapserver calls its methods one at a
// time, except Idle, which runs beside the reader of DONE.
type session struct {
	srv    *Server
	conn   *imapserver.Conn
	ctx    context.Context
	cancel context.CancelFunc
	ip     netip.Addr
	log    *slog.Logger

	busy      atomic.Int32 // commands in flight (for a graceful Close)
	acct      *directory.AccountInfo
	authFails int
	sel       atomic.Pointer[selection] // read by Idle's goroutine too
	searchRes []uint32                  // UIDs saved by SEARCH RETURN (SAVE), for "$"
}

// selection is a session's selected mailbox.
type selection struct {
	mb       *mailboxState
	st       *imapserver.SessionTracker
	name     string
	readOnly bool
}

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	ctx, cancel := context.WithCancel(s.ctx)
	ss := &session{srv: s, conn: c, ctx: ctx, cancel: cancel}
	if ap, err := netip.ParseAddrPort(c.NetConn().RemoteAddr().String()); err == nil {
		ss.ip = ap.Addr().Unmap()
	}
	ss.log = s.log.With("conn", s.connID.Add(1), "ip", ss.ip)
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.sessions[ss] = struct{}{}
		s.metrics.sessions.Inc()
	}
	s.mu.Unlock()
	if closed {
		cancel()
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Code: imap.ResponseCodeUnavailable, Text: "Server shutting down"}
	}
	return ss, nil, nil
}

// Close ends the session: unselects and cancels calls in flight.
func (ss *session) Close() error {
	ss.unselect()
	ss.cancel()
	ss.srv.mu.Lock()
	if _, ok := ss.srv.sessions[ss]; ok {
		delete(ss.srv.sessions, ss)
		ss.srv.metrics.sessions.Dec()
	}
	ss.srv.mu.Unlock()
	return nil
}

// track marks a command in flight and returns what records its end
// (metrics): defer ss.track("fetch", &err)().
func (ss *session) track(name string, errp *error) func() {
	ss.busy.Add(1)
	start := time.Now()
	return func() {
		ss.srv.metrics.command(name, start, errp)
		ss.busy.Add(-1)
	}
}

// fail turns an error into the client's reply and logs it: client mistakes
// and temporary trouble at debug, server faults at error.
func (ss *session) fail(op string, err error, missing *imap.Error) error {
	reply, fault := classify(err, missing)
	if fault {
		ss.log.Error("imap: command failed", "op", op, "account", ss.accountID(), "err", err)
	} else {
		ss.log.Debug("imap: command refused", "op", op, "account", ss.accountID(), "err", err)
	}
	return reply
}

func (ss *session) accountID() string {
	if ss.acct == nil {
		return ""
	}
	return ss.acct.ID
}

// rpc returns a backend client for the account and a context with the
// call deadline and the account header. done must be called.
func (ss *session) rpc(stream bool) (mailboxv1.MailboxClient, context.Context, context.CancelFunc, error) {
	if ss.acct == nil {
		return nil, nil, nil, errUnavailable
	}
	c, err := ss.srv.deps.Router.Route(ss.acct.ID, ss.acct.Backend)
	if err != nil {
		return nil, nil, nil, err
	}
	d := ss.srv.cfg.RPCTimeout
	if stream {
		d = ss.srv.cfg.StreamTimeout
	}
	ctx, cancel := context.WithTimeout(ss.ctx, d)
	return c, metadata.AppendToOutgoingContext(ctx, accountHeader, ss.acct.ID), cancel, nil
}

// unreachable reports a failed backend to the router.
func (s *Server) unreachable(c mailboxv1.MailboxClient, err error) {
	if fb, ok := s.deps.Router.(RouterFeedback); ok && temporary(err) {
		fb.Unreachable(c)
	}
}

// call runs a unary call; idempotent calls are tried once more on another
// backend when the first one was unreachable.
func call[T any](ss *session, idempotent bool, f func(ctx context.Context, c mailboxv1.MailboxClient) (T, error)) (T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		c, ctx, cancel, err := ss.rpc(false)
		if err != nil {
			return zero, err
		}
		r, err := f(ctx, c)
		cancel()
		if err == nil {
			return r, nil
		}
		ss.srv.unreachable(c, err)
		if !idempotent || attempt > 0 || !temporary(err) || ss.ctx.Err() != nil {
			return zero, err
		}
	}
}

// ---- not authenticated ----

// Login authenticates against the directory. Failures are counted; after
// MaxAuthFailures the connection is closed.
func (ss *session) Login(username, password string) error {
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.RPCTimeout)
	defer cancel()
	info, err := ss.srv.deps.Auth.Authenticate(ctx, username, password, ss.ip)
	switch {
	case err == nil:
		ss.srv.metrics.logins.WithLabelValues("ok").Inc()
		ss.acct = &info
		ss.log = ss.log.With("account", info.ID)
		ss.log.Debug("imap: login")
		return nil
	case errors.Is(err, directory.ErrBadCredentials), errors.Is(err, directory.ErrDisabled):
		ss.srv.metrics.logins.WithLabelValues("failed").Inc()
		ss.authFails++
		ss.log.Debug("imap: login failed", "failures", ss.authFails)
		if ss.authFails >= ss.srv.cfg.MaxAuthFailures {
			_ = ss.conn.Bye("Too many authentication failures")
		}
		return imapserver.ErrAuthFailed
	default:
		ss.srv.metrics.logins.WithLabelValues("temporary").Inc()
		return ss.fail("login", err, nil)
	}
}

// AppendLimit is the APPENDLIMIT; larger APPEND literals are refused
// before they are read.
func (ss *session) AppendLimit() uint32 { return uint32(ss.srv.cfg.MaxAppendSize) }

// ---- authenticated ----

// validName reports whether name (UTF-8, already decoded from modified
// UTF-7 by imapserver) can name a mailbox: no empty, "." or ".."
// components, no wildcards or control characters, bounded length.
func (ss *session) validName(name string) bool {
	if name == "" || len(name) > ss.srv.cfg.MaxMailboxName || !utf8.ValidString(name) {
		return false
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return false
		}
	}
	return !strings.ContainsFunc(name, func(r rune) bool { return r == '*' || r == '%' || unicode.IsControl(r) })
}

func canonical(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	return name
}

// checkName validates a name given to CREATE, RENAME or SUBSCRIBE; a
// trailing delimiter is dropped (RFC 9051 section 6.3.4).
func (ss *session) checkName(name string) (string, error) {
	name = strings.TrimSuffix(name, "/")
	if !ss.validName(name) {
		return "", errBadName
	}
	return canonical(name), nil
}

// lookupName validates a name given to SELECT, STATUS, DELETE and the like,
// which only look it up: a name that cannot exist does not exist.
func (ss *session) lookupName(name string) (string, error) {
	if !ss.validName(name) {
		return "", errNoMailbox
	}
	return canonical(name), nil
}

var specialUseOf = map[imap.MailboxAttr]mailboxv1.SpecialUse{
	imap.MailboxAttrAll: mailboxv1.SpecialUse_SPECIAL_USE_ALL, imap.MailboxAttrArchive: mailboxv1.SpecialUse_SPECIAL_USE_ARCHIVE,
	imap.MailboxAttrDrafts: mailboxv1.SpecialUse_SPECIAL_USE_DRAFTS, imap.MailboxAttrFlagged: mailboxv1.SpecialUse_SPECIAL_USE_FLAGGED,
	imap.MailboxAttrJunk: mailboxv1.SpecialUse_SPECIAL_USE_JUNK, imap.MailboxAttrSent: mailboxv1.SpecialUse_SPECIAL_USE_SENT,
	imap.MailboxAttrTrash: mailboxv1.SpecialUse_SPECIAL_USE_TRASH,
}

func attrOf(u mailboxv1.SpecialUse) imap.MailboxAttr {
	for a, v := range specialUseOf {
		if v == u {
			return a
		}
	}
	return ""
}

func (ss *session) Create(name string, options *imap.CreateOptions) (err error) {
	defer ss.track("create", &err)()
	name, err = ss.checkName(name)
	if err != nil {
		return err
	}
	req := &mailboxv1.CreateMailboxRequest{AccountId: ss.acct.ID, Name: name}
	if options != nil && len(options.SpecialUse) > 0 {
		u, ok := specialUseOf[options.SpecialUse[0]]
		if !ok || len(options.SpecialUse) > 1 {
			return no("USEATTR", "Unsupported special-use attribute")
		}
		req.SpecialUse = u
	}
	_, err = call(ss, false, func(ctx context.Context, c mailboxv1.MailboxClient) (*mailboxv1.CreateMailboxResponse, error) {
		return c.CreateMailbox(ctx, req)
	})
	if err != nil {
		return ss.fail("create", err, nil)
	}
	return nil
}

func (ss *session) Delete(name string) (err error) {
	defer ss.track("delete", &err)()
	name, err = ss.lookupName(name)
	if err != nil {
		return err
	}
	_, err = call(ss, false, func(ctx context.Context, c mailboxv1.MailboxClient) (*mailboxv1.DeleteMailboxResponse, error) {
		return c.DeleteMailbox(ctx, &mailboxv1.DeleteMailboxRequest{AccountId: ss.acct.ID, Name: name})
	})
	if err != nil {
		return ss.fail("delete", err, nil)
	}
	return nil
}

func (ss *session) Rename(oldName, newName string, _ *imap.RenameOptions) (err error) {
	defer ss.track("rename", &err)()
	oldName, err = ss.lookupName(oldName)
	if err != nil {
		return err
	}
	newName, err = ss.checkName(newName)
	if err != nil {
		return err
	}
	_, err = call(ss, false, func(ctx context.Context, c mailboxv1.MailboxClient) (*mailboxv1.RenameMailboxResponse, error) {
		return c.RenameMailbox(ctx, &mailboxv1.RenameMailboxRequest{AccountId: ss.acct.ID, OldName: oldName, NewName: newName})
	})
	if err != nil {
		return ss.fail("rename", err, nil)
	}
	return nil
}

func (ss *session) Subscribe(name string) error   { return ss.subscribe(name, true) }
func (ss *session) Unsubscribe(name string) error { return ss.subscribe(name, false) }

func (ss *session) subscribe(name string, on bool) error {
	name, err := ss.checkName(name)
	if err != nil {
		return err
	}
	_, err = call(ss, true, func(ctx context.Context, c mailboxv1.MailboxClient) (*mailboxv1.SetSubscribedResponse, error) {
		return c.SetSubscribed(ctx, &mailboxv1.SetSubscribedRequest{AccountId: ss.acct.ID, Name: name, Subscribed: on})
	})
	if err != nil {
		return ss.fail("subscribe", err, nil)
	}
	return nil
}

func (ss *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: '/'}}}, nil
}

// List answers LIST and LSUB; the backend matches the patterns.
func (ss *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) (err error) {
	defer ss.track("list", &err)()
	if len(patterns) == 0 {
		// RFC 9051 section 6.3.9: the hierarchy delimiter and root.
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: '/', Mailbox: ""})
	}
	var pats []string
	for _, p := range patterns {
		if p == "" {
			continue
		}
		if ref != "" && !strings.HasPrefix(p, "/") {
			p = strings.TrimSuffix(ref, "/") + "/" + p
		}
		pats = append(pats, strings.TrimPrefix(p, "/"))
	}
	if len(pats) == 0 {
		return nil
	}
	boxes, err := ss.listBoxes(&mailboxv1.ListMailboxesRequest{AccountId: ss.acct.ID, Patterns: pats,
		SubscribedOnly: options.SelectSubscribed, SpecialUseOnly: options.SelectSpecialUse, WithStatus: options.ReturnStatus != nil})
	if err != nil {
		return ss.fail("list", err, nil)
	}
	var childInfo map[string]bool
	if options.SelectRecursiveMatch {
		if boxes, childInfo, err = ss.recursiveMatch(boxes, pats, options.ReturnStatus != nil); err != nil {
			return ss.fail("list", err, nil)
		}
	}
	for _, m := range boxes {
		d := &imap.ListData{Delim: '/', Mailbox: m.Name}
		if childInfo[m.Name] {
			d.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if !m.Exists {
			d.Attrs = append(d.Attrs, imap.MailboxAttrNonExistent, imap.MailboxAttrNoSelect)
		}
		if m.HasChildren {
			d.Attrs = append(d.Attrs, imap.MailboxAttrHasChildren)
		} else {
			d.Attrs = append(d.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if m.Subscribed && (options.SelectSubscribed || options.ReturnSubscribed) {
			d.Attrs = append(d.Attrs, imap.MailboxAttrSubscribed)
		}
		if a := attrOf(m.SpecialUse); a != "" {
			d.Attrs = append(d.Attrs, a)
		}
		if options.ReturnStatus != nil && m.Exists && m.Status != nil {
			d.Status = ss.statusData(m.Name, m.Status, options.ReturnStatus)
		}
		if err := w.WriteList(d); err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) listBoxes(req *mailboxv1.ListMailboxesRequest) ([]*mailboxv1.MailboxInfo, error) {
	resp, err := call(ss, true, func(ctx context.Context, c mailboxv1.MailboxClient) (*mailboxv1.ListMailboxesResponse, error) {
		return c.ListMailboxes(ctx, req)
	})
	return resp.GetMailboxes(), err
}

// recursiveMatch adds to a LIST (SUBSCRIBED RECURSIVEMATCH) answer the
// mailboxes matching the patterns that are not subscribed but have
// subscribed descendants, and marks every listed mailbox with such
// descendants for CHILDINFO ("SUBSCRIBED") (RFC 5258 section 3.5).
func (ss *session) recursiveMatch(boxes []*mailboxv1.MailboxInfo, pats []string, withStatus bool) ([]*mailboxv1.MailboxInfo, map[string]bool, error) {
	subscribed, err := ss.listBoxes(&mailboxv1.ListMailboxesRequest{AccountId: ss.acct.ID, Patterns: []string{"*"}, SubscribedOnly: true})
	if err != nil {
		return nil, nil, err
	}
	listed := map[string]bool{}
	for _, m := range boxes {
		listed[m.Name] = true
	}
	childInfo := map[string]bool{}
	var extra []string
	for _, m := range subscribed {
		for i := 0; i < len(m.Name); i++ {
			if m.Name[i] != '/' {
				continue
			}
			parent := m.Name[:i]
			for _, p := range pats {
				if imapserver.MatchList(parent, '/', "", p) && !childInfo[parent] {
					childInfo[parent] = true
					if !listed[parent] {
						extra = append(extra, parent)
					}
				}
			}
		}
	}
	if len(extra) == 0 {
		return boxes, childInfo, nil
	}
	found, err := ss.listBoxes(&mailboxv1.ListMailboxesRequest{AccountId: ss.acct.ID, Patterns: extra, WithStatus: withStatus})
	if err != nil {
		return nil, nil, err
	}
	for _, m := range found {
		if childInfo[m.Name] && !listed[m.Name] {
			m.Subscribed = false
			boxes = append(boxes, m)
			listed[m.Name] = true
		}
	}
	for _, name := range extra {
		if !listed[name] {
			boxes = append(boxes, &mailboxv1.MailboxInfo{Name: name, HasChildren: true})
		}
	}
	return boxes, childInfo, nil
}

func (ss *session) Status(name string, options *imap.StatusOptions) (_ *imap.StatusData, err error) {
	defer ss.track("status", &err)()
	name, err = ss.lookupName(name)
	if err != nil {
		return nil, err
	}
	st, err := call(ss, true, func(ctx context.Context, c mailboxv1.MailboxClient) (*mailboxv1.MailboxStatus, error) {
		return c.GetStatus(ctx, &mailboxv1.GetStatusRequest{AccountId: ss.acct.ID, Name: name})
	})
	if err != nil {
		return nil, ss.fail("status", err, nil)
	}
	return ss.statusData(name, st, options), nil
}

// statusData fills every item imapserver may write (it dereferences the
// pointers of the items asked for).
func (ss *session) statusData(name string, st *mailboxv1.MailboxStatus, _ *imap.StatusOptions) *imap.StatusData {
	zero := uint32(0)
	zero64 := int64(0)
	limit := uint32(ss.srv.cfg.MaxAppendSize)
	msgs, unseen, deleted, size := st.Messages, st.Unseen, st.Deleted, st.Size
	return &imap.StatusData{
		Mailbox: name, NumMessages: &msgs, UIDNext: imap.UID(st.UidNext), UIDValidity: st.UidValidity,
		NumUnseen: &unseen, NumDeleted: &deleted, Size: &size, AppendLimit: &limit,
		DeletedStorage: &zero64, NumRecent: &zero, HighestModSeq: st.HighestModseq,
	}
}

// Append streams the literal to the backend in chunks; OK means the
// message is durable.
func (ss *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (_ *imap.AppendData, err error) {
	defer ss.track("append", &err)()
	name, err = ss.lookupName(name)
	if err != nil {
		return nil, errTryCreate
	}
	c, ctx, cancel, err := ss.rpc(true)
	if err != nil {
		return nil, ss.fail("append", err, errTryCreate)
	}
	defer cancel()
	hdr := &mailboxv1.AppendHeader{AccountId: ss.acct.ID, MailboxName: name, Flags: flagsToProto(options.Flags),
		Size: r.Size(), Quota: &mailboxv1.Quota{StorageBytes: ss.acct.Quota.StorageBytes, Messages: ss.acct.Quota.Messages}}
	if !options.Time.IsZero() {
		hdr.InternalDate = options.Time.Unix()
	}
	stream, err := c.Append(ctx)
	if err != nil {
		ss.srv.unreachable(c, err)
		return nil, ss.fail("append", err, errTryCreate)
	}
	if err := stream.Send(&mailboxv1.AppendRequest{Part: &mailboxv1.AppendRequest_Header{Header: hdr}}); err == nil {
		buf := make([]byte, 32<<10)
		for {
			n, rerr := io.ReadFull(r, buf)
			if n > 0 {
				if err := stream.Send(&mailboxv1.AppendRequest{Part: &mailboxv1.AppendRequest_Chunk{Chunk: buf[:n]}}); err != nil {
					break // the server ended the stream; CloseAndRecv tells why
				}
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				cancel() // the client went away: abort, nothing is stored
				return nil, rerr
			}
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		ss.srv.unreachable(c, err)
		return nil, ss.fail("append", err, errTryCreate)
	}
	if sel := ss.sel.Load(); sel != nil && sel.mb.key.id == resp.MailboxId {
		ss.syncSelected(nil, nil)
	}
	return &imap.AppendData{UID: imap.UID(resp.Uid), UIDValidity: resp.UidValidity}, nil
}

// ---- select ----

func (ss *session) Select(name string, options *imap.SelectOptions) (_ *imap.SelectData, err error) {
	defer ss.track("select", &err)()
	ss.unselect()
	name, err = ss.lookupName(name)
	if err != nil {
		return nil, err
	}
	resp, err := call(ss, true, func(ctx context.Context, c mailboxv1.MailboxClient) (*mailboxv1.SelectResponse, error) {
		return c.Select(ctx, &mailboxv1.SelectRequest{AccountId: ss.acct.ID, Name: name})
	})
	if err != nil {
		return nil, ss.fail("select", err, nil)
	}
	mb, fresh := ss.srv.acquire(ss.acct.ID, ss.acct.Backend, resp)
	if fresh {
		ss.srv.watch.add(mb, resp.Status.HighestModseq)
	} else {
		ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.RPCTimeout)
		err := mb.sync(ctx, nil, nil)
		cancel()
		if err != nil {
			ss.srv.release(mb)
			return nil, ss.fail("select", err, nil)
		}
	}
	mb.mu.Lock()
	for _, k := range resp.Keywords {
		mb.keywords[k] = true
	}
	flags := mb.flagsLocked()
	st := mb.tracker.NewSession()
	n := mb.uids.len()
	uidNext := max(resp.Status.UidNext, mb.uids.last()+1)
	firstUnseen := uint32(0)
	if resp.FirstUnseenUid != 0 {
		firstUnseen = mb.seqOf(resp.FirstUnseenUid)
	}
	mb.mu.Unlock()
	ss.sel.Store(&selection{mb: mb, st: st, name: name, readOnly: options.ReadOnly})

	perm := []imap.Flag{}
	if !options.ReadOnly {
		perm = append(append(perm, flags...), imap.FlagWildcard)
	}
	return &imap.SelectData{
		Flags: flags, PermanentFlags: perm, NumMessages: n, FirstUnseenSeqNum: firstUnseen,
		UIDNext: imap.UID(uidNext), UIDValidity: resp.Status.UidValidity, HighestModSeq: resp.Status.HighestModseq,
	}, nil
}

func (ss *session) Unselect() error {
	ss.unselect()
	return nil
}

func (ss *session) unselect() {
	sel := ss.sel.Swap(nil)
	if sel == nil {
		return
	}
	ss.searchRes = nil
	sel.mb.mu.Lock()
	sel.st.Close()
	sel.mb.mu.Unlock()
	ss.srv.release(sel.mb)
}

// syncSelected brings the selected mailbox up to date after this session
// changed it, so that the untagged responses precede the tagged OK.
func (ss *session) syncSelected(quiet []uint32, source *imapserver.SessionTracker) {
	sel := ss.sel.Load()
	if sel == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.RPCTimeout)
	defer cancel()
	if err := sel.mb.sync(ctx, source, quiet); err != nil {
		ss.log.Debug("imap: resync after command failed", "err", err)
		sel.mb.kick()
	}
}

// applyOwn is syncSelected after this session's own STORE or EXPUNGE,
// given its result: it needs no Changes call when nothing else changed the
// mailbox meanwhile (mailboxState.applyOwn).
func (ss *session) applyOwn(modseq uint64, vanished []uint32, changed []*mailboxv1.MessageMeta, quiet []uint32, source *imapserver.SessionTracker) {
	sel := ss.sel.Load()
	if sel == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.RPCTimeout)
	defer cancel()
	if err := sel.mb.applyOwn(ctx, modseq, vanished, changed, source, quiet); err != nil {
		ss.log.Debug("imap: resync after command failed", "err", err)
		sel.mb.kick()
	}
}

// Poll writes pending updates. While the Watch stream is down the mailbox
// is resynchronised first, so that NOOP still finds changes.
func (ss *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	sel := ss.sel.Load()
	if sel == nil {
		return nil
	}
	if !ss.srv.watch.healthy.Load() {
		ss.syncSelected(nil, nil)
	}
	return sel.st.Poll(w, allowExpunge)
}

// Idle pushes updates until stop. Updates arrive through the shared Watch
// stream (one per Server, not one per session); when that stream is
// reopened after a failure every mailbox is resynchronised.
func (ss *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	sel := ss.sel.Load()
	if sel == nil {
		<-stop
		return nil
	}
	return sel.st.Idle(w, stop)
}
