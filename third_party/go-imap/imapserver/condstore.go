package imapserver

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// condStoreAvailable reports whether the server advertises CONDSTORE
// (RFC 7162).
func (c *Conn) condStoreAvailable() bool {
	return c.server.options.caps().Has(imap.CapCondStore)
}

// enableCondStore records that the client used a CONDSTORE-enabling
// command (RFC 7162 section 3.1): from now on MODSEQ is part of every
// unsolicited FETCH response.
func (c *Conn) enableCondStore() {
	c.mutex.Lock()
	c.enabled[imap.CapCondStore] = struct{}{}
	c.mutex.Unlock()
}

func (c *Conn) qresyncAvailable() bool {
	return c.server.options.caps().Has(imap.CapQResync)
}

func (c *Conn) qresyncEnabled() bool {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	_, ok := c.enabled[imap.CapQResync]
	return ok
}

func (c *Conn) condStoreEnabled() bool {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	return c.enabled.Has(imap.CapCondStore)
}

func errUnknownModifier(what string) error {
	return newClientBugError("Unknown " + what + " modifier")
}

// readModifiers reads an optional parenthesised list of modifiers
// ("SP (" name [SP value] ... ")"), calling f for each name. f reads the
// modifier's value, if any. It reports whether a list was read.
func readModifiers(dec *imapwire.Decoder, f func(name string) error) (bool, error) {
	return dec.List(func() error {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		return f(strings.ToUpper(name))
	})
}

// readModSeqValzer reads "SP mod-sequence-valzer".
func readModSeqValzer(dec *imapwire.Decoder, ptr *uint64) error {
	if !dec.ExpectSP() || !dec.ExpectModSeq(ptr) {
		return dec.Err()
	}
	return nil
}

// readModSeqValue reads "SP mod-sequence-value" (not zero).
func readModSeqValue(dec *imapwire.Decoder, ptr *uint64) error {
	if err := readModSeqValzer(dec, ptr); err != nil {
		return err
	}
	if *ptr == 0 {
		return newClientBugError("Mod-sequence value must not be zero")
	}
	return nil
}

// readSelectQResync reads the QRESYNC select parameter's value:
// SP "(" uidvalidity SP mod-sequence-value [SP known-uids]
// [SP seq-match-data] ")".
func readSelectQResync(dec *imapwire.Decoder) (*imap.SelectQResync, error) {
	var q imap.SelectQResync
	if !dec.ExpectSP() || !dec.ExpectSpecial('(') || !dec.ExpectNumber(&q.UIDValidity) {
		return nil, dec.Err()
	}
	if err := readModSeqValue(dec, &q.ModSeq); err != nil {
		return nil, err
	}
	if q.UIDValidity == 0 {
		return nil, newClientBugError("UIDVALIDITY must not be zero")
	}
	for dec.SP() {
		if dec.Special('(') {
			var seqs imap.NumSet
			var uids imap.UIDSet
			if !dec.ExpectNumSet(imapwire.NumKindSeq, &seqs) || !dec.ExpectSP() || !dec.ExpectUIDSet(&uids) || !dec.ExpectSpecial(')') {
				return nil, dec.Err()
			}
			q.SeqMatchSeqNums, q.SeqMatchUIDs = seqs.(imap.SeqSet), uids
			break
		}
		if q.KnownUIDs != nil {
			return nil, newClientBugError("Unexpected QRESYNC parameter")
		}
		if !dec.ExpectUIDSet(&q.KnownUIDs) {
			return nil, dec.Err()
		}
	}
	if !dec.ExpectSpecial(')') {
		return nil, dec.Err()
	}
	return &q, nil
}
