package backend

import (
	"sync"

	"google.golang.org/protobuf/proto"

	"mailcluster/backend/store"
)

// bodyRefs caches where messages' bodies are stored (blob key, size and
// structure, from PostgreSQL), so that reading a body again costs no query.
// A message's location never changes: UIDs are not reused within a
// mailbox, mailbox ids not at all, and a stored body is never rewritten.
// An entry can only outlive its message. The backend that expunges or
// moves messages, or deletes a mailbox, drops their entries (and all of an
// account's go with a deleted mailbox); since a user's calls go to the
// backend of its mailHost, that is the one that cached them. On another
// backend, an entry of a message expunged there serves the body while the
// blob is still stored, as a read just before the expunge would have
// (RFC 2180 section 4.1); once the blob is deleted, GetBody asks
// PostgreSQL again, which says the message is gone.
//
// It is bounded in bytes (Config.BodyRefCache) and split in shards; when a
// shard is full, arbitrary entries make room (no recency order to keep up
// on every read).
type bodyRefs struct {
	shards [bodyRefShards]bodyRefShard
}

const bodyRefShards = 16

type bodyRefShard struct {
	mu    sync.Mutex
	items map[bodyRefKey]*store.BodyRef
	bytes int64
	max   int64
}

type bodyRefKey struct {
	account string
	mailbox int64
	uid     uint32
}

// bodyRefOverhead approximates an entry's memory besides its strings and
// structure: the map slot, the key and the BodyRef.
const bodyRefOverhead = 160

// newBodyRefs returns a cache of at most max bytes; nil (a cache that
// keeps nothing) when max is 0.
func newBodyRefs(max int64) *bodyRefs {
	if max <= 0 {
		return nil
	}
	c := &bodyRefs{}
	for i := range c.shards {
		c.shards[i] = bodyRefShard{items: map[bodyRefKey]*store.BodyRef{}, max: max / bodyRefShards}
	}
	return c
}

func (c *bodyRefs) shard(k bodyRefKey) *bodyRefShard {
	return &c.shards[(uint64(k.uid)^uint64(k.mailbox))%bodyRefShards]
}

// get returns the cached location of k, or nil. The result is shared: it
// must not be modified.
func (c *bodyRefs) get(k bodyRefKey) *store.BodyRef {
	if c == nil {
		return nil
	}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.items[k]
}

// cost approximates what an entry holds in memory; a decoded structure
// takes about three times its wire size.
func bodyRefCost(k bodyRefKey, ref *store.BodyRef) int64 {
	return int64(len(k.account)+len(ref.BlobKey)+3*proto.Size(ref.Structure)) + bodyRefOverhead
}

// put keeps the location of ref (its flags are not kept: they change).
func (c *bodyRefs) put(k bodyRefKey, ref *store.BodyRef) {
	if c == nil {
		return
	}
	e := &store.BodyRef{BlobKey: ref.BlobKey, Size: ref.Size, Structure: ref.Structure}
	cost := bodyRefCost(k, e)
	sh := c.shard(k)
	if cost > sh.max {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.items[k]; ok {
		return
	}
	for old, r := range sh.items {
		if sh.bytes+cost <= sh.max {
			break
		}
		sh.bytes -= bodyRefCost(old, r)
		delete(sh.items, old)
	}
	sh.items[k] = e
	sh.bytes += cost
}

// drop forgets k.
func (c *bodyRefs) drop(k bodyRefKey) {
	if c == nil {
		return
	}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r, ok := sh.items[k]; ok {
		sh.bytes -= bodyRefCost(k, r)
		delete(sh.items, k)
	}
}

// dropUIDs forgets the given messages of a mailbox.
func (c *bodyRefs) dropUIDs(account string, mailbox int64, uids []uint32) {
	for _, u := range uids {
		c.drop(bodyRefKey{account, mailbox, u})
	}
}

// dropAccount forgets every message of account.
func (c *bodyRefs) dropAccount(account string) {
	if c == nil {
		return
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, r := range sh.items {
			if k.account == account {
				sh.bytes -= bodyRefCost(k, r)
				delete(sh.items, k)
			}
		}
		sh.mu.Unlock()
	}
}

// len reports the entries and the bytes counted.
func (c *bodyRefs) len() (n int, bytes int64) {
	if c == nil {
		return 0, 0
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.items)
		bytes += sh.bytes
		sh.mu.Unlock()
	}
	return n, bytes
}
