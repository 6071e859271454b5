package imap

import (
	"sort"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// uidList is the ascending list of UIDs in a mailbox, kept as runs of
// consecutive UIDs: a mailbox of 100,000 messages with few expunges costs a
// few runs instead of 400 KB. Position i (0-based) is sequence number i+1
// in the server view.
type uidList struct {
	runs []uidRun
	n    uint32
}

type uidRun struct {
	start, end uint32 // closed
	before     uint32 // UIDs in earlier runs
}

// uidListOf builds a list from backend ranges (ascending, explicit ends).
func uidListOf(set *mailboxv1.UIDSet) uidList {
	var l uidList
	for _, r := range set.GetRanges() {
		if r.Start == 0 || r.End < r.Start {
			continue
		}
		l.pushRun(r.Start, r.End)
	}
	return l
}

func (l *uidList) len() uint32 { return l.n }

// last returns the highest UID, or 0.
func (l *uidList) last() uint32 {
	if len(l.runs) == 0 {
		return 0
	}
	return l.runs[len(l.runs)-1].end
}

// pushRun appends start..end, all above last.
func (l *uidList) pushRun(start, end uint32) {
	if k := len(l.runs); k > 0 && l.runs[k-1].end+1 == start {
		l.runs[k-1].end = end
	} else {
		l.runs = append(l.runs, uidRun{start: start, end: end, before: l.n})
	}
	l.n += end - start + 1
}

// push appends uid, which must be above last.
func (l *uidList) push(uid uint32) { l.pushRun(uid, uid) }

// at returns the UID at 0-based position i (< len).
func (l *uidList) at(i uint32) uint32 {
	k := sort.Search(len(l.runs), func(k int) bool { return l.runs[k].before > i }) - 1
	r := l.runs[k]
	return r.start + (i - r.before)
}

// seqOf returns the 1-based position of uid, or 0.
func (l *uidList) seqOf(uid uint32) uint32 {
	k := sort.Search(len(l.runs), func(k int) bool { return l.runs[k].end >= uid })
	if k == len(l.runs) || l.runs[k].start > uid {
		return 0
	}
	r := l.runs[k]
	return r.before + (uid - r.start) + 1
}

// lowerBound returns the position of the first UID >= uid (len if none).
func (l *uidList) lowerBound(uid uint32) uint32 {
	k := sort.Search(len(l.runs), func(k int) bool { return l.runs[k].end >= uid })
	if k == len(l.runs) {
		return l.n
	}
	r := l.runs[k]
	if uid <= r.start {
		return r.before
	}
	return r.before + (uid - r.start)
}

// each calls f for every UID with its 0-based position, in order.
func (l *uidList) each(f func(i, uid uint32)) {
	for _, r := range l.runs {
		for u := r.start; ; u++ {
			f(r.before+(u-r.start), u)
			if u == r.end {
				break
			}
		}
	}
}

// removeIf drops the UIDs for which gone is true and returns the 1-based
// positions they had, ascending.
func (l *uidList) removeIf(gone func(uid uint32) bool) []uint32 {
	var removed []uint32
	var kept uidList
	l.each(func(i, u uint32) {
		if gone(u) {
			removed = append(removed, i+1)
		} else {
			kept.push(u)
		}
	})
	if len(removed) > 0 {
		*l = kept
	}
	return removed
}
