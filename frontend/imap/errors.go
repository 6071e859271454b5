package imap

import (
	"context"
	"errors"

	"github.com/emersion/go-imap/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mailcluster/directory"
)

// The one table from backend and directory errors to IMAP responses
// (RFC 5530 response codes). Texts are fixed: no internal error text ever
// reaches a client.

func no(code imap.ResponseCode, text string) *imap.Error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
}

func bad(code imap.ResponseCode, text string) *imap.Error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Code: code, Text: text}
}

var (
	errUnavailable = no(imap.ResponseCodeUnavailable, "Service temporarily unavailable, try again later")
	errNoMailbox   = no(imap.ResponseCodeNonExistent, "No such mailbox")
	// errExpunged: a message read for a FETCH was expunged by another
	// session meanwhile (RFC 5530 EXPUNGEISSUED); the mailbox is there.
	errExpunged  = no("EXPUNGEISSUED", "Message expunged meanwhile")
	errTryCreate = no(imap.ResponseCodeTryCreate, "No such mailbox")
	errExists    = no(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	errCannot    = no(imap.ResponseCodeCannot, "Operation not permitted")
	errInvalid   = no(imap.ResponseCodeCannot, "Request refused as invalid")
	errOverQuota = no(imap.ResponseCodeOverQuota, "Quota exceeded")
	errTooBig    = no(imap.ResponseCodeTooBig, "Message too big")
	errLimit     = no(imap.ResponseCodeLimit, "Limit exceeded")
	errReadOnly  = no(imap.ResponseCodeCannot, "Mailbox is read-only")
	errBadName   = no(imap.ResponseCodeCannot, "Invalid mailbox name")
	errAuthTemp  = no(imap.ResponseCodeUnavailable, "Authentication temporarily unavailable, try again later")
)

// Reasons in the ErrorInfo detail of RESOURCE_EXHAUSTED (mailbox.proto).
const (
	reasonOverQuota = "OVERQUOTA"
	reasonTooBig    = "TOOBIG"
)

// temporary reports whether err means the backend could not be reached, so
// that another backend may be tried.
func temporary(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	st, ok := status.FromError(err)
	return ok && (st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded)
}

// classify maps a backend error to an IMAP error. missing is the reply for
// NOT_FOUND (TRYCREATE for a destination, NONEXISTENT otherwise). serverFault
// tells the caller to log at error level.
func classify(err error, missing *imap.Error) (reply *imap.Error, serverFault bool) {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie, false
	}
	if errors.Is(err, directory.ErrTemporary) {
		return errAuthTemp, false
	}
	st, ok := status.FromError(err)
	if !ok {
		return errUnavailable, !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	switch st.Code() {
	case codes.NotFound:
		if missing == nil {
			missing = errNoMailbox
		}
		return missing, false
	case codes.AlreadyExists:
		return errExists, false
	case codes.FailedPrecondition:
		return errCannot, false
	case codes.InvalidArgument, codes.OutOfRange:
		return errInvalid, false
	case codes.ResourceExhausted:
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				switch info.Reason {
				case reasonOverQuota:
					return errOverQuota, false
				case reasonTooBig:
					return errTooBig, false
				}
			}
		}
		return errLimit, false
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return errUnavailable, false
	}
	// Unauthenticated, PermissionDenied (frontend misconfigured), Internal,
	// Unknown: a server fault; the client sees a temporary error.
	return errUnavailable, true
}
