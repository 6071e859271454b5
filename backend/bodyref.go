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
	items map[bodyRefKey]bodyRef
	bytes int64
	max   int64
	drops uint64 // entries dropped so far (see gen)
}

type bodyRef struct {
	ref  *store.BodyRef
	cost int64
}

type bodyRefKey struct {
	account string
	mailbox int64
	uid     uint32
}

// bodyRefOverhead approximates an entry's memory besides its strings and
// structure: the map slot, the key and the BodyRef.
const bodyRefOverhead = 160

// bodyRefStructure is how many times its wire size a decoded structure
// takes in memory (a multipart/alternative one: 216 bytes on the wire,
// about 2,000 decoded).
const bodyRefStructure = 10

// newBodyRefs returns a cache of at most max bytes; nil (a cache that
// keeps nothing) when max is 0.
func newBodyRefs(max int64) *bodyRefs {
	if max <= 0 {
		return nil
	}
	c := &bodyRefs{}
	for i := range c.shards {
		c.shards[i] = bodyRefShard{items: map[bodyRefKey]bodyRef{}, max: max / bodyRefShards}
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
	return sh.items[k].ref
}

// gen returns what put needs to tell whether k may have been dropped
// since: a location read from PostgreSQL before an EXPUNGE dropped it must
// not be cached after.
func (c *bodyRefs) gen(k bodyRefKey) uint64 {
	if c == nil {
		return 0
	}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.drops
}

// bodyRefCost approximates what an entry holds in memory.
func bodyRefCost(k bodyRefKey, ref *store.BodyRef) int64 {
	return int64(len(k.account)+len(ref.BlobKey)+bodyRefStructure*proto.Size(ref.Structure)) + bodyRefOverhead
}

// put keeps the location of ref (its flags are not kept: they change),
// read from PostgreSQL after gen returned gen; not when an entry of its
// shard was dropped since.
func (c *bodyRefs) put(k bodyRefKey, ref *store.BodyRef, gen uint64) {
	if c == nil {
		return
	}
	e := bodyRef{ref: &store.BodyRef{BlobKey: ref.BlobKey, Size: ref.Size, Structure: ref.Structure}}
	e.cost = bodyRefCost(k, e.ref)
	sh := c.shard(k)
	if e.cost > sh.max {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.items[k]; ok || sh.drops != gen {
		return
	}
	for old, r := range sh.items {
		if sh.bytes+e.cost <= sh.max {
			break
		}
		sh.bytes -= r.cost
		delete(sh.items, old) // evicted, not dropped: gen stays
	}
	sh.items[k] = e
	sh.bytes += e.cost
}

// drop forgets k.
func (c *bodyRefs) drop(k bodyRefKey) {
	if c == nil {
		return
	}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.drops++
	if r, ok := sh.items[k]; ok {
		sh.bytes -= r.cost
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
	c.dropIf(func(k bodyRefKey) bool { return k.account == account })
}

// clear forgets everything: after the backend's connection to PostgreSQL
// for change notifications was lost and made again, for the database it
// reaches may not be the one it read the locations from (a failover to a
// replica that was behind, a restore), where mailbox ids and UIDs could
// be given out again.
func (c *bodyRefs) clear() {
	c.dropIf(func(bodyRefKey) bool { return true })
}

// dropIf forgets the entries for which drop reports true.
func (c *bodyRefs) dropIf(drop func(bodyRefKey) bool) {
	if c == nil {
		return
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.drops++
		for k, r := range sh.items {
			if drop(k) {
				sh.bytes -= r.cost
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
