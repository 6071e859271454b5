// Package pop3 is the frontend's POP3 service (RFC 1939) with CAPA (RFC
// 2449), STLS (RFC 2595), SASL PLAIN (RFC 5034, RFC 4616), extended response
// codes (RFC 3206) and implicit TLS on port 995 (RFC 8314). It is written by
// hand: a wire codec that does no networking (codec.go, fuzzed) and a state
// machine (session.go, its command loop fuzzed too) that authenticates
// through the directory and reads and changes the user's INBOX through the
// backend's gRPC API. It holds no mail: only each session's message list
// and marks.
//
// # Contracts
//
//   - The maildrop is the INBOX as it was at login (one Maildrop call: the
//     UIDVALIDITY and every UID with its size and flags, from one
//     snapshot). Messages are numbered in UID order and keep their numbers
//     for the session; mail that arrives later is seen at the next login.
//   - UIDL is Dovecot's default pop3_uidl_format, %08Xu%08Xv: the UID and
//     the UIDVALIDITY in hex. Both live in PostgreSQL, so the UIDL is the
//     same in every session and through every backend, and users migrated
//     from a Dovecot with the default format do not download everything
//     again. (body_id is not used: one body can be in the INBOX twice.)
//   - LIST sizes are the octets RETR sends, not counting the stuffing dots
//     and the terminating line, because RETR sends the stored body byte for
//     byte: 8-bit content and long lines untouched, with dot-stuffing. The
//     backend stores every body with CRLF line endings (a bare LF becomes
//     CRLF when a message is delivered or appended: mailbox.proto), so RETR
//     has CRLF line endings and LIST is the stored size, known at login
//     without reading any body. Should a stored body still hold a bare LF,
//     it is sent as stored (LIST and RETR still agree) and a '.' after it is
//     stuffed too, so that no client sees an early terminator. A body that
//     does not end with a line ending gets a CRLF before the terminating
//     ".", which is framing and not counted.
//   - TOP n m sends the header, the empty line and m body lines, cut from
//     the same byte stream as RETR (a message without an empty line is all
//     header and is sent whole).
//   - DELE marks, RSET unmarks. QUIT in the TRANSACTION state enters UPDATE:
//     StoreFlags \Deleted on the marked UIDs, then Expunge of exactly that
//     UID set (a message another client flagged \Deleted stays), and +OK
//     only after both have returned, which is when the removal is durable
//     (DESIGN.md rule 1). If either fails the answer is -ERR [SYS/TEMP] and
//     \Deleted is taken off again, best effort. A connection that ends in
//     any other way (drop, timeout, shutdown) changes nothing.
//   - Messages retrieved with RETR get \Seen at QUIT (as Dovecot does), best
//     effort and after the expunge; TOP does not set \Seen.
//   - Two sessions for one user at once both work; there is no [IN-USE]
//     lock. Frontends are stateless and the backend has no lock to offer,
//     and none is needed: each session works on its own snapshot by UID, a
//     message the other session expunged answers RETR with "-ERR Message
//     was removed by another session.", and expunging a UID twice is a
//     no-op. Nothing is lost or duplicated.
//   - [LOGIN-DELAY] is never sent: no minimum interval between logins is
//     enforced (it would need state shared by all frontends).
//   - APOP is not offered: it needs the plaintext password on the server
//     (the directory checks passwords only by LDAP bind) and its MD5
//     challenge-response is obsolete; with TLS, USER/PASS and AUTH PLAIN
//     are safe.
//   - USER, PASS and AUTH are refused with -ERR [AUTH] on a connection
//     without TLS unless Config.InsecureAuth (local development). CAPA
//     advertises USER and SASL PLAIN only when they are allowed, and STLS
//     only before TLS. Commands pipelined behind STLS are discarded.
//   - Failed logins answer -ERR [AUTH] after Config.AuthFailureDelay (on top
//     of the directory's per-address backoff) and the connection is closed
//     after MaxAuthFailures. A disabled account is -ERR [SYS/PERM]. The
//     directory or a backend unavailable is -ERR [SYS/TEMP]; error text
//     from the directory, gRPC or the backend is logged, never sent.
//   - Limits: MaxLineLength (a longer line is answered "-ERR Line too long."
//     and the connection closed), MaxAuthCommands before login,
//     MaxBadCommands (unknown, malformed, out-of-state), IdleTimeout (at
//     least 10 minutes, RFC 1939 section 3) for reading a command and for
//     each write to a client that does not read.
//
// # Read-ahead
//
// A RETR of a message that is not read ahead yet fetches it and the ones
// after it, Config.ReadAhead in all, from the backend (readahead.go),
// several in one GetBodies call, so that a client downloading its new mail
// one RETR at a time does not wait for a backend round trip per message,
// and the backend answers a batch with one stream and one metadata query.
// The bytes sent are the same; memory is bounded per message (1 MiB), per
// session (ReadAhead messages) and per server (ReadAheadMemory).
//
// # Wiring (the frontend role)
//
// NewServer(cfg, directory, pool, log) with cfg.Hostname, cfg.TLS (the
// certificate store's TLSConfig) and cfg.BackendTimeout set from the
// frontend's settings. Serve it on the plaintext listener (110: STLS) and on
// tls.NewListener of the 995 listener (implicit TLS is recognised by the
// *tls.Conn); both listeners are listener.New with the PROXY protocol and
// the shared Limits, and Busy as the refusal line of the plaintext one.
// Shutdown(ctx) ends sessions gracefully.
package pop3
