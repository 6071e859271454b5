package backend

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mailcluster/backend/blob"
	"mailcluster/backend/store"
)

// Reasons in the google.rpc.ErrorInfo detail of RESOURCE_EXHAUSTED errors.
const (
	ReasonOverQuota = "OVERQUOTA"
	ReasonTooBig    = "TOOBIG"
	errorDomain     = "mailcluster"
)

var (
	errTooBig        = errors.New("message too big")
	errSizeMismatch  = errors.New("message size does not match the announced size")
	errNoHeader      = errors.New("first request must carry the header")
	errPermission    = errors.New("request is for another account than the caller's")
	errTooManyRcpt   = errors.New("too many recipients")
	errNoRecipients  = errors.New("no recipients")
	errBadPart       = errors.New("no such body part")
	errWatchTooLarge = errors.New("too many watched accounts")
)

func withReason(c codes.Code, msg, reason string) error {
	st := status.New(c, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// toStatus is the backend's one table from domain errors to gRPC status.
// Messages are safe to pass to clients; causes of server faults go to the
// log only.
func toStatus(log *slog.Logger, method string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, "no such mailbox")
	case errors.Is(err, store.ErrNoMessage), errors.Is(err, errBadPart):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrExists):
		return status.Error(codes.AlreadyExists, "mailbox already exists")
	case errors.Is(err, store.ErrForbidden):
		return status.Error(codes.FailedPrecondition, "not allowed on this mailbox")
	case errors.Is(err, store.ErrOverQuota):
		return withReason(codes.ResourceExhausted, "over quota", ReasonOverQuota)
	case errors.Is(err, errTooBig):
		return withReason(codes.ResourceExhausted, "message too big", ReasonTooBig)
	case errors.Is(err, errWatchTooLarge):
		return status.Error(codes.ResourceExhausted, err.Error())
	case store.IsInvalid(err):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errSizeMismatch), errors.Is(err, errNoHeader), errors.Is(err, errTooManyRcpt), errors.Is(err, errNoRecipients):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errPermission):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status (from the stream itself)
	}
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrUploadLost) || blob.IsTemporary(err) {
		log.Warn("storage unavailable", "method", method, "err", err)
		return status.Error(codes.Unavailable, "storage temporarily unavailable")
	}
	log.Error("internal error", "method", method, "err", err)
	return status.Error(codes.Unavailable, "temporary server error")
}
