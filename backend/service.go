package backend

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"mailcluster/backend/blob"
	"mailcluster/backend/store"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// AccountHeader is the gRPC metadata key with which a frontend names the
// account a session has authenticated as. When present, every request's
// account_id must equal it.
const AccountHeader = "x-mailcluster-account"

// service implements mailboxv1.MailboxServer: each handler validates,
// calls the store or the blob store, and maps the error.
type service struct {
	mailboxv1.UnsafeMailboxServer
	cfg     Config
	log     *slog.Logger
	store   *store.Store
	blobs   blob.Store
	hub     *hub
	metrics *metrics
	queue   *queueRunner // nil when this backend does not deliver outbound mail
	dkim    *dkimKeys
	helo    string    // the host name bounces come from
	refs    *bodyRefs // where bodies are stored (nil: off)
}

var _ mailboxv1.MailboxServer = (*service)(nil)

// account checks that the request names an account and that it is the
// caller's.
func account(ctx context.Context, id string) error {
	if id == "" {
		return &store.InvalidError{Msg: "account id is empty"}
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(AccountHeader); len(v) > 0 && v[0] != id {
			return errPermission
		}
	}
	return nil
}

func (s *service) fail(method string, err error) error { return toStatus(s.log, method, err) }

func (s *service) ListMailboxes(ctx context.Context, r *mailboxv1.ListMailboxesRequest) (*mailboxv1.ListMailboxesResponse, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("ListMailboxes", err)
	}
	boxes, err := s.store.ListMailboxes(ctx, r.AccountId, store.ListOptions{
		Patterns: r.Patterns, SubscribedOnly: r.SubscribedOnly, SpecialUseOnly: r.SpecialUseOnly, WithStatus: r.WithStatus})
	if err != nil {
		return nil, s.fail("ListMailboxes", err)
	}
	return &mailboxv1.ListMailboxesResponse{Mailboxes: boxes}, nil
}

func (s *service) CreateMailbox(ctx context.Context, r *mailboxv1.CreateMailboxRequest) (*mailboxv1.CreateMailboxResponse, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("CreateMailbox", err)
	}
	info, err := s.store.CreateMailbox(ctx, r.AccountId, r.Name, r.SpecialUse)
	if err != nil {
		return nil, s.fail("CreateMailbox", err)
	}
	return &mailboxv1.CreateMailboxResponse{Mailbox: info}, nil
}

func (s *service) DeleteMailbox(ctx context.Context, r *mailboxv1.DeleteMailboxRequest) (*mailboxv1.DeleteMailboxResponse, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("DeleteMailbox", err)
	}
	if err := s.store.DeleteMailbox(ctx, r.AccountId, r.Name); err != nil {
		return nil, s.fail("DeleteMailbox", err)
	}
	s.refs.dropAccount(r.AccountId)
	return &mailboxv1.DeleteMailboxResponse{}, nil
}

func (s *service) RenameMailbox(ctx context.Context, r *mailboxv1.RenameMailboxRequest) (*mailboxv1.RenameMailboxResponse, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("RenameMailbox", err)
	}
	if err := s.store.RenameMailbox(ctx, r.AccountId, r.OldName, r.NewName); err != nil {
		return nil, s.fail("RenameMailbox", err)
	}
	if strings.EqualFold(r.OldName, "INBOX") {
		s.refs.dropAccount(r.AccountId) // INBOX's messages moved to a new mailbox
	}
	return &mailboxv1.RenameMailboxResponse{}, nil
}

func (s *service) SetSubscribed(ctx context.Context, r *mailboxv1.SetSubscribedRequest) (*mailboxv1.SetSubscribedResponse, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("SetSubscribed", err)
	}
	if err := s.store.SetSubscribed(ctx, r.AccountId, r.Name, r.Subscribed); err != nil {
		return nil, s.fail("SetSubscribed", err)
	}
	return &mailboxv1.SetSubscribedResponse{}, nil
}

func (s *service) GetStatus(ctx context.Context, r *mailboxv1.GetStatusRequest) (*mailboxv1.MailboxStatus, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("GetStatus", err)
	}
	st, err := s.store.Status(ctx, r.AccountId, r.Name)
	if err != nil {
		return nil, s.fail("GetStatus", err)
	}
	return st, nil
}

func (s *service) Select(ctx context.Context, r *mailboxv1.SelectRequest) (*mailboxv1.SelectResponse, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("Select", err)
	}
	resp, err := s.store.Select(ctx, r.AccountId, r.Name)
	if err != nil {
		return nil, s.fail("Select", err)
	}
	return resp, nil
}

func (s *service) Changes(r *mailboxv1.ChangesRequest, stream grpc.ServerStreamingServer[mailboxv1.ChangesResponse]) error {
	ctx := stream.Context()
	if err := account(ctx, r.AccountId); err != nil {
		return s.fail("Changes", err)
	}
	err := s.store.Changes(ctx, r.AccountId, r.MailboxId, r.SinceModseq, r.KnownUids, stream.Send)
	return s.fail("Changes", err)
}

// maildropBatch is the most messages in one MaildropResponse (the limit
// mailbox.proto promises).
const maildropBatch = 10000

func (s *service) Maildrop(r *mailboxv1.MaildropRequest, stream grpc.ServerStreamingServer[mailboxv1.MaildropResponse]) error {
	ctx := stream.Context()
	if err := account(ctx, r.AccountId); err != nil {
		return s.fail("Maildrop", err)
	}
	return s.fail("Maildrop", s.store.Maildrop(ctx, r.AccountId, r.Name, maildropBatch, stream.Send))
}

func (s *service) Fetch(r *mailboxv1.FetchRequest, stream grpc.ServerStreamingServer[mailboxv1.FetchResponse]) error {
	ctx := stream.Context()
	if err := account(ctx, r.AccountId); err != nil {
		return s.fail("Fetch", err)
	}
	if len(r.GetCachedEnvelopes().GetRanges()) > s.cfg.MaxUIDRanges {
		return s.fail("Fetch", &store.InvalidError{Msg: fmt.Sprintf("cached_envelopes has more than %d ranges", s.cfg.MaxUIDRanges)})
	}
	cached := sortedSpans(r.GetCachedEnvelopes().GetRanges()) // once, not per batch
	err := s.store.Fetch(ctx, r.AccountId, r.MailboxId, r.Uids, store.FetchOptions{
		Envelope: r.Envelope, Structure: r.BodyStructure, Header: r.Header, Dates: r.InternalDate,
		ChangedSince: r.ChangedSince, BatchSize: int(r.BatchSize),
	}, func(rows []store.FetchRow) error {
		if len(cached) > 0 {
			dropCachedEnvelopes(rows, cached)
		}
		// Sent pre-encoded: see wire.go.
		return stream.SendMsg(&preEncoded{appendFetchResponse(nil, rows, r.InternalDate)})
	})
	return s.fail("Fetch", err)
}

// uidSpan is a UID range with lo <= hi ("*" as the highest UID).
type uidSpan struct{ lo, hi uint32 }

// sortedSpans turns a set's ranges into spans sorted by their low end.
func sortedSpans(ranges []*mailboxv1.UIDRange) []uidSpan {
	spans := make([]uidSpan, 0, len(ranges))
	for _, rg := range ranges {
		lo, hi := rg.GetStart(), rg.GetEnd()
		if hi == 0 { // "*"
			hi = 1<<32 - 1
		}
		spans = append(spans, uidSpan{min(lo, hi), max(lo, hi)})
	}
	slices.SortFunc(spans, func(a, b uidSpan) int { return cmp.Compare(a.lo, b.lo) })
	return spans
}

// dropCachedEnvelopes leaves out the envelope of the rows (in UID order)
// whose UID is in spans (sortedSpans). One pass over both: a span that
// ends below a row's UID ends below every later row's.
func dropCachedEnvelopes(rows []store.FetchRow, spans []uidSpan) {
	k := 0
	for i := range rows {
		uid := rows[i].UID
		for k < len(spans) && spans[k].hi < uid {
			k++
		}
		if k < len(spans) && spans[k].lo <= uid {
			rows[i].Envelope = nil
		}
	}
}

func (s *service) StoreFlags(ctx context.Context, r *mailboxv1.StoreFlagsRequest) (*mailboxv1.StoreFlagsResponse, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("StoreFlags", err)
	}
	resp, err := s.store.StoreFlags(ctx, r.AccountId, r.MailboxId, r.Uids, r.Mode, r.Flags, r.UnchangedSince)
	if err != nil {
		return nil, s.fail("StoreFlags", err)
	}
	return resp, nil
}

func (s *service) Copy(ctx context.Context, r *mailboxv1.CopyRequest) (*mailboxv1.CopyResponse, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("Copy", err)
	}
	res, err := s.store.Copy(ctx, r.AccountId, r.MailboxId, r.Uids, r.DestName, r.Quota)
	if err != nil {
		return nil, s.fail("Copy", err)
	}
	return &mailboxv1.CopyResponse{DestUidValidity: res.DestUIDValidity, SourceUids: res.SourceUIDs, DestUids: res.DestUIDs}, nil
}

func (s *service) Move(ctx context.Context, r *mailboxv1.MoveRequest) (*mailboxv1.MoveResponse, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("Move", err)
	}
	res, err := s.store.Move(ctx, r.AccountId, r.MailboxId, r.Uids, r.DestName)
	if err != nil {
		return nil, s.fail("Move", err)
	}
	s.refs.dropUIDs(r.AccountId, r.MailboxId, res.SourceUIDs)
	return &mailboxv1.MoveResponse{DestUidValidity: res.DestUIDValidity, SourceUids: res.SourceUIDs, DestUids: res.DestUIDs, Modseq: res.Modseq}, nil
}

func (s *service) Expunge(ctx context.Context, r *mailboxv1.ExpungeRequest) (*mailboxv1.ExpungeResponse, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("Expunge", err)
	}
	uids, modseq, err := s.store.Expunge(ctx, r.AccountId, r.MailboxId, r.Uids)
	if err != nil {
		return nil, s.fail("Expunge", err)
	}
	s.refs.dropUIDs(r.AccountId, r.MailboxId, uids)
	return &mailboxv1.ExpungeResponse{Expunged: uids, Modseq: modseq}, nil
}

func (s *service) Search(ctx context.Context, r *mailboxv1.SearchRequest) (*mailboxv1.SearchResponse, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("Search", err)
	}
	uids, highest, err := s.store.Search(ctx, r.AccountId, r.MailboxId, r.Criteria)
	if err != nil {
		return nil, s.fail("Search", err)
	}
	return &mailboxv1.SearchResponse{Uids: uids, HighestModseq: highest}, nil
}

func (s *service) GetQuota(ctx context.Context, r *mailboxv1.GetQuotaRequest) (*mailboxv1.GetQuotaResponse, error) {
	if err := account(ctx, r.AccountId); err != nil {
		return nil, s.fail("GetQuota", err)
	}
	b, n, err := s.store.Quota(ctx, r.AccountId)
	if err != nil {
		return nil, s.fail("GetQuota", err)
	}
	return &mailboxv1.GetQuotaResponse{StorageBytes: b, Messages: n}, nil
}
