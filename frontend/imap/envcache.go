package imap

import (
	"container/list"
	"sync"

	"github.com/emersion/go-imap/v2/imapserver"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// envelopeCache keeps the wire form of ENVELOPEs this frontend has
// rendered, so that a FETCH of ENVELOPE for messages fetched before (a
// client opening a large mailbox again, several sessions on one mailbox)
// sends bytes instead of converting and encoding every field again; on a
// 10,000-message mailbox that encoding was most of the frontend's CPU for
// FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE). A message never changes under
// its UID within one UIDVALIDITY, so an entry is never stale; entries are
// dropped least recently used first when the cache holds more than its
// byte limit. FETCH tells the backend which envelopes it has
// (FetchRequest.cached_envelopes), so those are neither read out, sent nor
// decoded again; the gRPC API stays typed (DESIGN.md).
type envelopeCache struct {
	shards [envelopeCacheShards]envelopeShard
}

const envelopeCacheShards = 16

// envelopeEntryOverhead approximates an entry's memory beyond its bytes
// (list element, map slot, key).
const envelopeEntryOverhead = 160

type envelopeKey struct {
	account     string
	mailbox     int64
	uidValidity uint32
	uid         uint32
}

type envelopeEntry struct {
	key  envelopeKey
	wire []byte
}

type envelopeShard struct {
	mu    sync.Mutex
	max   int64
	size  int64
	items map[envelopeKey]*list.Element
	lru   list.List // front: most recently used
}

// newEnvelopeCache returns a cache of at most maxBytes, or nil (no cache)
// for 0.
func newEnvelopeCache(maxBytes int64) *envelopeCache {
	if maxBytes <= 0 {
		return nil
	}
	c := &envelopeCache{}
	for i := range c.shards {
		c.shards[i].max = maxBytes / envelopeCacheShards
		c.shards[i].items = map[envelopeKey]*list.Element{}
	}
	return c
}

// get returns the cached ENVELOPE of k, or nil. The bytes stay valid
// after the entry is dropped.
func (c *envelopeCache) get(k envelopeKey) []byte {
	if c == nil {
		return nil
	}
	sh := &c.shards[k.uid%envelopeCacheShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if el, ok := sh.items[k]; ok {
		sh.lru.MoveToFront(el)
		return el.Value.(*envelopeEntry).wire
	}
	return nil
}

// wire returns the ENVELOPE of k in wire form, rendering e (and keeping
// the result) when it is not cached. A nil cache renders every time.
func (c *envelopeCache) wire(k envelopeKey, e *mailboxv1.Envelope) []byte {
	if c == nil {
		return imapserver.EncodeEnvelope(envelopeFromProto(e))
	}
	if b := c.get(k); b != nil {
		return b
	}
	sh := &c.shards[k.uid%envelopeCacheShards]
	b := imapserver.EncodeEnvelope(envelopeFromProto(e))
	cost := int64(len(b) + len(k.account) + envelopeEntryOverhead)
	if cost > sh.max {
		return b
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.items[k]; ok {
		return b // rendered concurrently
	}
	sh.items[k] = sh.lru.PushFront(&envelopeEntry{key: k, wire: b})
	sh.size += cost
	for sh.size > sh.max {
		el := sh.lru.Back()
		ent := el.Value.(*envelopeEntry)
		sh.lru.Remove(el)
		delete(sh.items, ent.key)
		sh.size -= int64(len(ent.wire) + len(ent.key.account) + envelopeEntryOverhead)
	}
	return b
}

// len returns the number of cached envelopes and their cost in bytes.
func (c *envelopeCache) len() (n int, bytes int64) {
	if c == nil {
		return 0, 0
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.items)
		bytes += sh.size
		sh.mu.Unlock()
	}
	return n, bytes
}
