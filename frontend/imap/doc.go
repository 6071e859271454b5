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
// come first. After STORE and EXPUNGE that sync needs no backend call when
// the state had seen every change before this one (the change's MODSEQ is
// the next after the state's): the call's own result is applied.
//
// # Change notifications
//
// One backend Watch stream per Server carries the notifications of every
// account with a selected mailbox (accounts are added on the first SELECT
// and removed with the last session). An event resynchronises the
// mailboxes it names; IDLE sessions see the result at once. An event for a
// delivery made through the same backend names the message it appended
// (UID, flags, MODSEQ): when the state has seen every change before it,
// that is applied without a Changes call, as a session's own change is.
// When the stream
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
// # Extensions
//
// Advertised: IMAP4rev1, IMAP4rev2, SASL-IR (AUTH=PLAIN), LITERAL-, IDLE,
// UIDPLUS, MOVE, NAMESPACE, UNSELECT, ENABLE, ESEARCH and SEARCHRES,
// LIST-EXTENDED (with RECURSIVEMATCH/CHILDINFO), LIST-STATUS, STATUS=SIZE,
// SPECIAL-USE, CREATE-SPECIAL-USE, CHILDREN, APPENDLIMIT, UTF8=ACCEPT,
// BINARY fetches (IMAP4rev2), STARTTLS, ID, QUOTA with QUOTA=RES-STORAGE
// and QUOTA=RES-MESSAGE, CONDSTORE and QRESYNC.
//
// go-imap v2.0.0-beta.8 (the newest release) has no server side for ID,
// QUOTA, CONDSTORE and QRESYNC; go.mod replaces it with a patched copy in
// third_party/go-imap (its README says what changed and when to drop it).
//
// ID (RFC 2971, quota.go) is answered in every state, before LOGIN too,
// with the name "mailcluster" and nothing else; the client's fields are
// logged at debug. More than 30 pairs, fields over 30 octets, values over
// 1024 octets and repeated fields get BAD (imapserver), and the session
// goes on.
//
// QUOTA (RFC 9208, quota.go): one quota root, "", the account, holding
// every mailbox. Its limits are the directory's (AccountInfo.Quota, read at
// login), its usage the backend's GetQuota: STORAGE in units of 1024
// octets (usage rounded up, limit down) and MESSAGE, each reported only
// when the directory sets a limit for it. An account without limits has no
// quota root: GETQUOTAROOT lists none and GETQUOTA "" is NO [NONEXISTENT].
// GETQUOTAROOT of a mailbox that does not exist is NO [NONEXISTENT].
// SETQUOTA is not offered (the directory owns limits).
//
// CONDSTORE (RFC 7162 section 3): MODSEQs are the backend's, per account
// (so a mailbox's HIGHESTMODSEQ may jump by more than its own changes).
// Every SELECT and EXAMINE reports HIGHESTMODSEQ, and STATUS (and LIST
// RETURN (STATUS)) HIGHESTMODSEQ. FETCH CHANGEDSINCE is filtered by the
// backend. A client enables CONDSTORE with ENABLE CONDSTORE, SELECT
// (CONDSTORE), or any command using a CONDSTORE argument (the MODSEQ fetch
// item, CHANGEDSINCE, UNCHANGEDSINCE, SEARCH MODSEQ, STATUS HIGHESTMODSEQ);
// from then on its STORE responses and unsolicited FETCH responses for
// flag changes made elsewhere carry MODSEQ, and STORE .SILENT still
// reports the MODSEQ of each message it changed. STORE (UNCHANGEDSINCE n)
// stores only messages not changed after n, in one backend transaction, and
// names the others in OK [MODIFIED set] (sequence numbers, or UIDs for UID
// STORE). SEARCH with a MODSEQ key appends the highest MODSEQ of the
// messages found (SEARCH and ESEARCH). A FETCH that sets \Seen reports
// the MODSEQ of that change. Known gap: UNCHANGEDSINCE 0 acts as no
// modifier (go-imap's StoreOptions cannot tell them apart).
//
// QRESYNC (RFC 7162 section 3.2, qresync.go), after ENABLE QRESYNC:
// expunges reach the session as VANISHED (from the tracker, with UIDs),
// never EXPUNGE. SELECT/EXAMINE (QRESYNC (uidvalidity modseq
// [known-uids])) with the current UIDVALIDITY answers, before the tagged
// OK, VANISHED (EARLIER) with the known UIDs expunged after modseq and a
// FETCH (UID FLAGS MODSEQ) for each message changed since, both from one
// backend Changes call; the sequence-match data is ignored (it only
// narrows the answer). UID FETCH (CHANGEDSINCE n VANISHED) adds
// VANISHED (EARLIER) for the set. When the backend's expunge log no longer
// reaches back to modseq, every known UID below UIDNEXT that is not
// present is reported vanished (RFC 7162 section 3.2.5.2 allows UIDs that
// never existed); the answer is ranges, whatever the size of the client's
// set.
//
// An unknown command before authentication is answered with BYE by
// imapserver. Malformed modified UTF-7 in a mailbox name and SEARCH
// parentheses nested past imapserver's depth limit are refused with
// NO [SERVERBUG] by imapserver itself (no detail reaches the client).
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
