// Package imap is the IMAP4rev1/IMAP4rev2 service of the frontend role. It
// adapts go-imap v2's imapserver sessions to the backend's gRPC mailbox API
// (proto/mailbox/v1) and does nothing else: no storage, no SQL, no LDAP
// beyond the Authenticator it is given.
//
// # Sessions and sequence numbers
//
// Each connection authenticates through Deps.Auth (directory.Directory),
// then routes every command to a backend through Deps.Router, asked again
// for each command so that a backend that went away is replaced at once
// (idempotent calls are retried once on another backend). A selected
// mailbox is shared by every session of this Server that has it selected
// (mailboxState): the UIDs present, and imapserver's MailboxTracker, which
// gives each session its own sequence numbers. The shared state changes
// only through sync, which applies the backend's Changes (new UIDs, flag
// changes, vanished UIDs) and queues EXISTS, FETCH FLAGS and EXPUNGE for
// every session; imapserver writes them only where RFC 9051 section 7.5.1
// allows (no EXPUNGE during FETCH, STORE or SEARCH by sequence number).
// After its own STORE, EXPUNGE, MOVE, and APPEND or COPY into the selected
// mailbox, a session syncs before the tagged OK, so its untagged responses
// come first.
//
// # Change notifications
//
// One backend Watch stream per Server carries the notifications of every
// account with a selected mailbox (accounts are added on the first SELECT
// and removed with the last session). An event resynchronises the
// mailboxes it names; IDLE sessions see the result at once. When the stream
// breaks it is reopened with backoff and every mailbox resynchronised;
// while it is down, each command resynchronises first.
//
// # Limits
//
// APPEND literals over Config.MaxAppendSize are refused with NO [TOOBIG]
// before any byte is read (APPENDLIMIT is advertised); other commands take
// literals of at most 4 KiB and lines of at most 50 KiB (imapserver's
// fixed limits). SEARCH nesting deeper than Config.MaxSearchDepth gets
// NO [LIMIT]. CREATE and RENAME refuse names with empty, "." or ".."
// components, wildcards, control characters or more than
// Config.MaxMailboxName bytes. LOGIN and AUTHENTICATE are refused with
// LOGINDISABLED/NO [PRIVACYREQUIRED] until TLS unless the listener is served
// with insecure authentication (local development). After
// Config.MaxAuthFailures failed logins the connection ends with BYE.
// Unauthenticated connections time out after 30 s of silence,
// authenticated ones after 35 minutes (imapserver). Backend and directory
// errors are mapped by one table (errors.go); no internal text reaches a
// client.
//
// # Extensions and what go-imap v2.0.0-beta.8 leaves out
//
// Advertised: IMAP4rev1, IMAP4rev2, SASL-IR (AUTH=PLAIN), LITERAL-, IDLE,
// UIDPLUS, MOVE, NAMESPACE, UNSELECT, ENABLE, ESEARCH and SEARCHRES,
// LIST-EXTENDED (with RECURSIVEMATCH/CHILDINFO), LIST-STATUS, STATUS=SIZE,
// SPECIAL-USE, CREATE-SPECIAL-USE, CHILDREN, APPENDLIMIT, UTF8=ACCEPT,
// BINARY fetches (IMAP4rev2), STARTTLS. imapserver has no parser for ID,
// QUOTA (GETQUOTA/GETQUOTAROOT), CONDSTORE and QRESYNC (MODSEQ fetch item,
// CHANGEDSINCE, UNCHANGEDSINCE, SELECT parameters, VANISHED), so they are
// not advertised, though the backend contract supports them; an unknown
// command before authentication (such as ID from a client that sends it
// unasked) is answered with BYE by imapserver. Malformed modified UTF-7 in
// a mailbox name and SEARCH parentheses nested past imapserver's depth
// limit are refused with NO [SERVERBUG] by imapserver itself (no detail
// reaches the client).
//
// # Wiring (frontend role)
//
//	srv, err := imap.New(cfg.IMAP, imap.Deps{
//		Auth:   dir,                       // *directory.Directory
//		Router: imap.PoolRouter(pool),     // *pool.Pool; unreachable backends are marked down
//		TLS:    certStore.TLSConfig(),     // enables STARTTLS on 143
//	}, log)
//	go srv.Serve(plain143)                           // listener.Listener (PROXY protocol, limits; Busy: imap.BusyLine)
//	go srv.Serve(tls.NewListener(proxied993, tlsCfg)) // TLS must be the outermost wrapper: imapserver
//	                                                  // checks for *tls.Conn to allow LOGIN
//	...
//	srv.Close(ctx) // BYE [UNAVAILABLE] to every client, then close
//
// Deps.Watch may open the shared Watch stream on a backend of the
// frontend's choice; by default it is opened on Router.Route("", "").
package imap
