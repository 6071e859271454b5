package backend

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mailcluster/backend/store"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// The cache keeps what it is given within its bound, and a nil cache
// (body-location-cache 0) keeps nothing.
func TestBodyRefsBound(t *testing.T) {
	const max = 16 * 4000 // 4,000 bytes a shard
	c := newBodyRefs(max)
	st := &mailboxv1.BodyStructure{Type: "text", Subtype: "plain"}
	for uid := uint32(1); uid <= 2000; uid++ {
		k := bodyRefKey{"acct", 7, uid}
		c.put(k, &store.BodyRef{BlobKey: fmt.Sprintf("blob-%d", uid), Size: int64(uid), Structure: st,
			Flags: &mailboxv1.Flags{System: 1}}, c.gen(k))
	}
	n, bytes := c.len()
	if bytes > max || n == 0 || n == 2000 {
		t.Fatalf("%d entries, %d bytes after 2,000 puts into %d", n, bytes, max)
	}
	var last *store.BodyRef
	for uid := uint32(2000); uid > 0 && last == nil; uid-- {
		last = c.get(bodyRefKey{"acct", 7, uid})
		if last != nil && (last.BlobKey != fmt.Sprintf("blob-%d", uid) || last.Size != int64(uid) || last.Flags != nil) {
			t.Fatalf("uid %d: %+v", uid, last)
		}
	}
	if last == nil {
		t.Fatal("nothing cached")
	}
	if c.get(bodyRefKey{"other", 7, 2000}) != nil || c.get(bodyRefKey{"acct", 8, 2000}) != nil {
		t.Fatal("an entry answered for another account or mailbox")
	}
	for uid := uint32(1); uid <= 2000; uid++ {
		c.drop(bodyRefKey{"acct", 7, uid})
	}
	if n, bytes := c.len(); n != 0 || bytes != 0 {
		t.Fatalf("after dropping all: %d entries, %d bytes", n, bytes)
	}
	// A location read before a drop is not cached after it.
	k := bodyRefKey{"acct", 7, 1}
	gen := c.gen(k)
	c.drop(bodyRefKey{"acct", 7, 1 + bodyRefShards}) // same shard
	c.put(k, last, gen)
	if c.get(k) != nil {
		t.Fatal("a location read before a drop was cached")
	}
	c.put(k, last, c.gen(k))
	if c.get(k) == nil {
		t.Fatal("a location read after the drop was not cached")
	}
	var off *bodyRefs = newBodyRefs(0)
	off.put(bodyRefKey{"acct", 7, 1}, last, 0)
	if off.get(bodyRefKey{"acct", 7, 1}) != nil {
		t.Fatal("a cache of 0 bytes kept an entry")
	}
}

// A body read again comes from its cached location without PostgreSQL
// (the row is made to point elsewhere, and the read still finds the body);
// a read that sets \Seen asks PostgreSQL; a message expunged and swept
// after its location was cached is NotFound, not a server error.
func TestGetBodyLocationCache(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	msg := testMessage("cached", "the body\r\n")
	mustDeliver(t, c, msg, "refs")
	mustDeliver(t, c, testMessage("second", "other body\r\n"), "refs")
	id := selectBox(t, c, "refs", "INBOX").Status.MailboxId
	peek := &mailboxv1.GetBodyRequest{AccountId: "refs", MailboxId: id, Uid: 1}
	if got, _, err := body(t, c, peek); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("first read: %q, %v", got, err)
	}
	db := dbName(e.dsn)
	if _, err := e.pg.Exec(db, `UPDATE messages SET blob_key = 'no-such-blob' WHERE account_id = 'refs' AND uid = 1`); err != nil {
		t.Fatal(err)
	}
	if got, _, err := body(t, c, peek); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("second read did not use the cached location: %q, %v", got, err)
	}
	if _, err := e.pg.Exec(db, `UPDATE messages SET blob_key = (SELECT blob_key FROM messages WHERE account_id = 'refs' AND uid = 2) WHERE account_id = 'refs' AND uid = 1`); err != nil {
		t.Fatal(err)
	}
	seen := &mailboxv1.GetBodyRequest{AccountId: "refs", MailboxId: id, Uid: 1, SetSeen: true}
	if got, first, err := body(t, c, seen); err != nil || !bytes.Contains(got, []byte("other body")) || first.GetFlags().GetSystem()&uint32(mailboxv1.Flag_FLAG_SEEN) == 0 {
		t.Fatalf("a read setting \\Seen did not ask PostgreSQL: %q, %v, %v", got, first, err)
	}

	// Expunge message 2 after its location was cached, and sweep its
	// body away (message 1 now shares it, so restore message 1 first).
	if _, err := e.pg.Exec(db, `UPDATE messages SET blob_key = 'no-such-blob' WHERE account_id = 'refs' AND uid = 1`); err != nil {
		t.Fatal(err)
	}
	two := &mailboxv1.GetBodyRequest{AccountId: "refs", MailboxId: id, Uid: 2}
	if _, _, err := body(t, c, two); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StoreFlags(ctxT(t), &mailboxv1.StoreFlagsRequest{AccountId: "refs", MailboxId: id, Uids: uidSet(2, 2),
		Mode: mailboxv1.StoreMode_STORE_MODE_ADD, Flags: &mailboxv1.Flags{System: uint32(mailboxv1.Flag_FLAG_DELETED)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expunge(ctxT(t), &mailboxv1.ExpungeRequest{AccountId: "refs", MailboxId: id, Uids: uidSet(2, 2)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := body(t, c, two); status.Code(err) != codes.NotFound {
		t.Fatalf("expunged message: %v, want NotFound", err)
	}
	// The same once the entry is back (as on a backend that did not
	// expunge it) and the body swept away.
	refs, k2 := e.backends[0].svc.refs, bodyRefKey{"refs", id, 2}
	refs.put(k2, &store.BodyRef{BlobKey: "no-such-blob", Size: 10,
		Structure: &mailboxv1.BodyStructure{Type: "text", Subtype: "plain", BodyOffset: 5, EndOffset: 10}}, refs.gen(k2))
	if _, err := e.backends[0].Sweep(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := body(t, c, two); status.Code(err) != codes.NotFound {
		t.Fatalf("expunged and swept message: %v, want NotFound", err)
	}
}

// MOVE and DELETE of a mailbox drop the cached locations of what they
// remove, so that the backend that did them answers NotFound at once.
func TestBodyLocationCacheMoveDelete(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	mustDeliver(t, c, testMessage("a", "one\r\n"), "mover")
	mustDeliver(t, c, testMessage("b", "two\r\n"), "mover")
	id := selectBox(t, c, "mover", "INBOX").Status.MailboxId
	for uid := uint32(1); uid <= 2; uid++ {
		if _, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "mover", MailboxId: id, Uid: uid}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateMailbox(ctxT(t), &mailboxv1.CreateMailboxRequest{AccountId: "mover", Name: "Keep"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(ctxT(t), &mailboxv1.MoveRequest{AccountId: "mover", MailboxId: id, Uids: uidSet(1, 1), DestName: "Keep"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "mover", MailboxId: id, Uid: 1}); status.Code(err) != codes.NotFound {
		t.Fatalf("moved message in its old mailbox: %v, want NotFound", err)
	}
	arch := selectBox(t, c, "mover", "Keep").Status.MailboxId
	if _, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "mover", MailboxId: arch, Uid: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteMailbox(ctxT(t), &mailboxv1.DeleteMailboxRequest{AccountId: "mover", Name: "Keep"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "mover", MailboxId: arch, Uid: 1}); status.Code(err) != codes.NotFound {
		t.Fatalf("message of a deleted mailbox: %v, want NotFound", err)
	}
	// RENAME INBOX moves its messages to a new mailbox; INBOX is empty.
	if _, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "mover", MailboxId: id, Uid: 2}); err != nil {
		t.Fatal(err) // cached again (DELETE dropped the account's entries)
	}
	if _, err := c.RenameMailbox(ctxT(t), &mailboxv1.RenameMailboxRequest{AccountId: "mover", OldName: "INBOX", NewName: "Old"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "mover", MailboxId: id, Uid: 2}); status.Code(err) != codes.NotFound {
		t.Fatalf("message of a renamed INBOX under the old id: %v, want NotFound", err)
	}
}

// The body location cache starts empty again when the backend's LISTEN
// connection to PostgreSQL is made again (as after a failover), so that no
// location read from the database before can serve a reused UID.
func TestBodyLocationCacheClearedOnReconnect(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.client(0)
	mustDeliver(t, c, testMessage("cached", "the body\r\n"), "refs")
	id := selectBox(t, c, "refs", "INBOX").Status.MailboxId
	if _, _, err := body(t, c, &mailboxv1.GetBodyRequest{AccountId: "refs", MailboxId: id, Uid: 1}); err != nil {
		t.Fatal(err)
	}
	refs := e.backends[0].svc.refs
	if n, _ := refs.len(); n != 1 {
		t.Fatalf("%d cached locations after a read, want 1", n)
	}
	if _, err := e.pg.Exec("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"+
		dbName(e.dsn)+"' AND query LIKE 'LISTEN%'"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, _ := refs.len(); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cached location outlived the new LISTEN connection")
		}
	}
}
