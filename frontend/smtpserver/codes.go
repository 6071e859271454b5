package smtpserver

import (
	"github.com/emersion/go-smtp"

	"mailcluster/frontend/fault"
)

// reply builds the one error type go-smtp passes to clients unchanged. Every
// error a session returns to go-smtp must be one of these: go-smtp sends the
// text of any other error to the client verbatim.
func reply(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// Replies, with the RFC that defines each (RFC 5321 for codes, RFC 3463 and
// RFC 5248 for enhanced codes).
var (
	// RCPT (RFC 5321 3.3, RFC 3463 X.1.1, X.2.1, X.2.2, X.7.1, X.4.x).
	errNoSuchUser      = reply(550, smtp.EnhancedCode{5, 1, 1}, "No such user here")
	errDisabled        = reply(550, smtp.EnhancedCode{5, 2, 1}, "Mailbox disabled, not accepting messages")
	errOverQuotaRcpt   = reply(452, smtp.EnhancedCode{4, 2, 2}, "Mailbox full, try again later")
	errRelayDenied     = reply(554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied")
	errBadAddress      = reply(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax")
	errBadSender       = reply(501, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax")
	errPathTooLong     = reply(501, smtp.EnhancedCode{5, 5, 2}, "Path too long (RFC 5321 4.5.3.1.3)")
	errListLimit       = reply(550, smtp.EnhancedCode{5, 2, 4}, "Mailing list expansion problem")
	errTooManyExpanded = reply(452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients")
	errDirectoryDown   = reply(451, smtp.EnhancedCode{4, 4, 3}, "Directory temporarily unavailable, try again later")
	errBackendDownRcpt = reply(451, smtp.EnhancedCode{4, 4, 1}, "Mailbox server temporarily unavailable, try again later")
	errTooManyBad      = reply(421, smtp.EnhancedCode{4, 7, 0}, "Too many invalid recipients, closing connection")

	// MAIL and AUTH (RFC 4954 6, RFC 6409 6.1, RFC 5248).
	errAuthRequired   = reply(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	errNotYourAddress = reply(553, smtp.EnhancedCode{5, 7, 1}, "Sender address is not yours")
	errAuthFailed     = reply(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
	errAuthTemp       = reply(454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure, try again later")
	errAuthSyntax     = reply(501, smtp.EnhancedCode{5, 5, 2}, "Malformed authentication exchange")
	errAuthNoMech     = reply(504, smtp.EnhancedCode{5, 5, 4}, "Unrecognized authentication type")
	errAuthNotHere    = reply(503, smtp.EnhancedCode{5, 5, 1}, "AUTH is not available on this port; use submission")
	errAuthTooMany    = reply(421, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentications, closing connection")
	errAuthzid        = reply(535, smtp.EnhancedCode{5, 7, 8}, "Authorization identity must be empty or equal the login")
	errBadHelo        = reply(501, smtp.EnhancedCode{5, 5, 2}, "Invalid HELO/EHLO argument (RFC 5321 4.1.1.1)")

	// VRFY and EXPN (RFC 5321 3.5, 4.3.2; errNoSuchUser, errDisabled,
	// errListLimit and errDirectoryDown as for RCPT).
	errVrfySyntax   = reply(501, smtp.EnhancedCode{5, 5, 4}, "Argument must be an address: local-part@domain")
	errCannotVerify = reply(252, smtp.EnhancedCode{2, 5, 0}, "Cannot verify an address outside this system, but will try to deliver")
	errVrfyTooMany  = reply(421, smtp.EnhancedCode{4, 7, 0}, "Too many VRFY and EXPN commands, closing connection")

	// DATA and BDAT (RFC 5321 4.5.3.1.6, RFC 1870, RFC 3463 X.3.4, X.6.0, X.2.2).
	errTooBig      = reply(552, smtp.EnhancedCode{5, 3, 4}, "Message size exceeds fixed maximum message size")
	errLineTooLong = reply(500, smtp.EnhancedCode{5, 5, 2}, "Line too long (RFC 5321 4.5.3.1.6)")
	errHeaderLine  = reply(554, smtp.EnhancedCode{5, 6, 0}, "Header line longer than 998 characters (RFC 5322 2.1.1)")
	errBareNewline = reply(554, smtp.EnhancedCode{5, 5, 2}, "Bare CR or LF in message; lines must end with CRLF (RFC 5321 2.3.8)")
	errNUL         = reply(554, smtp.EnhancedCode{5, 6, 0}, "NUL character in message")
	errLoop        = reply(554, smtp.EnhancedCode{5, 4, 6}, "Too many hops: mail loop detected (RFC 5321 6.3)")
	errTimeout     = reply(451, smtp.EnhancedCode{4, 4, 2}, "Timeout while receiving the message")
	errTemporary   = reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure, message not accepted, try again later")
	errOverQuota   = reply(552, smtp.EnhancedCode{5, 2, 2}, "Mailbox full")
	errNoMailbox   = reply(550, smtp.EnhancedCode{5, 1, 1}, "No such mailbox")
	errRejected    = reply(554, smtp.EnhancedCode{5, 6, 0}, "Message rejected")
)

// dataError is the table from a backend error kind to the reply to DATA or
// the last BDAT (DESIGN.md habit 3).
func dataError(k fault.Kind) *smtp.SMTPError {
	switch k {
	case fault.OverQuota:
		return errOverQuota
	case fault.TooBig:
		return errTooBig
	case fault.NotFound:
		return errNoMailbox
	case fault.Invalid:
		return errRejected
	}
	return errTemporary // Temporary, Config, Canceled and anything unknown
}

// rcptError is the table for errors of the checks made at RCPT time.
func rcptError(k fault.Kind) *smtp.SMTPError {
	switch k {
	case fault.OverQuota:
		return errOverQuotaRcpt
	case fault.NotFound:
		return errNoSuchUser
	}
	return errBackendDownRcpt
}
