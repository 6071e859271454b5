// Package fault classifies the errors a frontend meets (backend gRPC status,
// directory errors, context ends) into a few kinds, so that each protocol
// keeps exactly one table from kind to reply (SMTP code, IMAP response code,
// POP3 response code) and no internal error text reaches a client.
package fault

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mailcluster/directory"
)

// Kind says whose fault an error is and whether trying again can help.
type Kind int

// Kinds, from the most common.
const (
	// Temporary: a backend, PostgreSQL, S3 or LDAP is unreachable or slow,
	// or something unexpected happened. Try again later (SMTP 4xx, IMAP NO
	// [UNAVAILABLE], POP3 -ERR [SYS/TEMP]). Unknown errors are Temporary.
	Temporary Kind = iota
	// OverQuota: the account is over its storage or message quota
	// (RESOURCE_EXHAUSTED with reason OVERQUOTA).
	OverQuota
	// TooBig: the message is larger than the backend accepts
	// (RESOURCE_EXHAUSTED with reason TOOBIG).
	TooBig
	// NotFound: no such mailbox or message.
	NotFound
	// Invalid: the request was refused as malformed; nothing changed.
	Invalid
	// Exists: the mailbox already exists.
	Exists
	// Forbidden: an IMAP rule forbids it (FAILED_PRECONDITION).
	Forbidden
	// Canceled: the client went away (its context ended).
	Canceled
	// Config: the backend refused the frontend's credentials or the
	// account header (UNAUTHENTICATED, PERMISSION_DENIED): an operator
	// must fix the configuration; clients see a temporary error.
	Config
)

var names = [...]string{"temporary", "over-quota", "too-big", "not-found", "invalid", "exists", "forbidden", "canceled", "config"}

func (k Kind) String() string {
	if int(k) < len(names) {
		return names[k]
	}
	return "temporary"
}

// Reasons in the google.rpc.ErrorInfo detail of RESOURCE_EXHAUSTED errors
// (the backend's contract, proto/mailbox/v1/mailbox.proto).
const (
	ReasonOverQuota = "OVERQUOTA"
	ReasonTooBig    = "TOOBIG"
)

// Of classifies err. nil is not an error: callers check it first.
func Of(err error) Kind {
	switch {
	case errors.Is(err, directory.ErrTemporary):
		return Temporary
	case errors.Is(err, context.Canceled):
		return Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return Temporary
	}
	st, ok := status.FromError(err)
	if !ok {
		return Temporary
	}
	switch st.Code() {
	case codes.ResourceExhausted:
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				switch info.Reason {
				case ReasonOverQuota:
					return OverQuota
				case ReasonTooBig:
					return TooBig
				}
			}
		}
		return Temporary
	case codes.NotFound:
		return NotFound
	case codes.InvalidArgument, codes.OutOfRange:
		return Invalid
	case codes.AlreadyExists:
		return Exists
	case codes.FailedPrecondition:
		return Forbidden
	case codes.Canceled:
		return Canceled
	case codes.Unauthenticated, codes.PermissionDenied:
		return Config
	}
	return Temporary // Unavailable, DeadlineExceeded, Internal, Unknown, …
}
