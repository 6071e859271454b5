package imapserver

import (
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

func (c *Conn) handleStore(tag string, dec *imapwire.Decoder, numKind NumKind, name string) error {
	var (
		numSet  imap.NumSet
		item    string
		options imap.StoreOptions
	)
	if !dec.ExpectSP() || !dec.ExpectNumSet(numKind.wire(), &numSet) || !dec.ExpectSP() {
		return dec.Err()
	}
	// RFC 7162 section 3.1.3
	hasModifiers, err := readModifiers(dec, func(name string) error {
		if name == "UNCHANGEDSINCE" && c.condStoreAvailable() {
			return readModSeqValzer(dec, &options.UnchangedSince)
		}
		return errUnknownModifier("STORE")
	})
	if err != nil {
		return err
	}
	if hasModifiers && !dec.ExpectSP() {
		return dec.Err()
	}
	if !dec.ExpectAtom(&item) || !dec.ExpectSP() {
		return dec.Err()
	}
	var flags []imap.Flag
	isList, err := dec.List(func() error {
		flag, err := internal.ExpectFlag(dec)
		if err != nil {
			return err
		}
		flags = append(flags, flag)
		return nil
	})
	if err != nil {
		return err
	} else if !isList {
		for {
			flag, err := internal.ExpectFlag(dec)
			if err != nil {
				return err
			}
			flags = append(flags, flag)

			if !dec.SP() {
				break
			}
		}
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}

	item = strings.ToUpper(item)
	silent := strings.HasSuffix(item, ".SILENT")
	item = strings.TrimSuffix(item, ".SILENT")

	var op imap.StoreFlagsOp
	switch {
	case strings.HasPrefix(item, "+"):
		op = imap.StoreFlagsAdd
		item = strings.TrimPrefix(item, "+")
	case strings.HasPrefix(item, "-"):
		op = imap.StoreFlagsDel
		item = strings.TrimPrefix(item, "-")
	default:
		op = imap.StoreFlagsSet
	}

	if item != "FLAGS" {
		return newClientBugError("STORE can only change FLAGS")
	}

	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}
	if hasModifiers {
		c.enableCondStore()
	}

	w := &FetchWriter{conn: c}
	err = c.session.Store(w, numSet, &imap.StoreFlags{
		Op:     op,
		Silent: silent,
		Flags:  flags,
	}, &options)
	if err != nil {
		return err
	}

	if err := c.poll(name); err != nil {
		return err
	}
	resp := &imap.StatusResponse{
		Type: imap.StatusResponseTypeOK,
		Text: fmt.Sprintf("%v completed", name),
	}
	if w.modified != nil && !isNumSetEmpty(w.modified) {
		resp.Code = imap.ResponseCode("MODIFIED " + w.modified.String())
		resp.Text = "Conditional STORE failed"
	}
	return c.writeStatusResp(tag, resp)
}
