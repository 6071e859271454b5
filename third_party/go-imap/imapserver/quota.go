package imapserver

import (
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

func (c *Conn) handleGetQuota(dec *imapwire.Decoder) error {
	var root string
	if !dec.ExpectSP() || !dec.ExpectAString(&root) || !dec.ExpectCRLF() {
		return dec.Err()
	}
	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		return err
	}
	session, ok := c.session.(SessionQuota)
	if !ok {
		return newClientBugError("QUOTA is not supported")
	}
	data, err := session.GetQuota(root)
	if err != nil {
		return err
	}
	return c.writeQuota(data)
}

func (c *Conn) handleGetQuotaRoot(dec *imapwire.Decoder) error {
	var mailbox string
	if !dec.ExpectSP() || !dec.ExpectMailbox(&mailbox) || !dec.ExpectCRLF() {
		return dec.Err()
	}
	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		return err
	}
	session, ok := c.session.(SessionQuota)
	if !ok {
		return newClientBugError("QUOTA is not supported")
	}
	roots, err := session.GetQuotaRoot(mailbox)
	if err != nil {
		return err
	}

	enc := newResponseEncoder(c)
	enc.Atom("*").SP().Atom("QUOTAROOT").SP().Mailbox(mailbox)
	for _, root := range roots {
		enc.SP().String(root.Root)
	}
	err = enc.CRLF()
	enc.end()
	if err != nil {
		return err
	}

	for i := range roots {
		if err := c.writeQuota(&roots[i]); err != nil {
			return err
		}
	}
	return nil
}

// writeQuota writes a QUOTA response, resources in name order.
func (c *Conn) writeQuota(data *imap.QuotaData) error {
	types := make([]string, 0, len(data.Resources))
	for t := range data.Resources {
		types = append(types, string(t))
	}
	sort.Strings(types)

	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("QUOTA").SP().String(data.Root).SP()
	enc.List(len(types), func(i int) {
		res := data.Resources[imap.QuotaResourceType(types[i])]
		enc.Atom(types[i]).SP().Number64(res.Usage).SP().Number64(res.Limit)
	})
	return enc.CRLF()
}
