package imapserver

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// RFC 2971 section 3.3 limits on the client's ID parameters.
const (
	maxIDParams   = 30
	maxIDFieldLen = 30
	maxIDValueLen = 1024
)

func (c *Conn) handleID(dec *imapwire.Decoder) error {
	if !dec.ExpectSP() {
		return dec.Err()
	}
	var clientID *imap.IDData
	var atom string
	if dec.Atom(&atom) {
		if !strings.EqualFold(atom, "NIL") {
			return newClientBugError("Expected ID parameter list or NIL")
		}
	} else {
		clientID = &imap.IDData{}
		seen := make(map[string]bool)
		err := dec.ExpectList(func() error {
			var field, value string
			if !dec.ExpectString(&field) || !dec.ExpectSP() || !dec.ExpectNString(&value) {
				return dec.Err()
			}
			field = strings.ToLower(field)
			switch {
			case len(seen) == maxIDParams:
				return newClientBugError("Too many ID parameters")
			case len(field) > maxIDFieldLen || len(value) > maxIDValueLen:
				return newClientBugError("ID field or value too long")
			case seen[field]:
				return newClientBugError("Duplicate ID field")
			}
			seen[field] = true
			setIDField(clientID, field, value)
			return nil
		})
		if err != nil {
			return err
		}
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}

	session, ok := c.session.(SessionID)
	if !ok {
		return newClientBugError("ID is not supported")
	}
	serverID, err := session.ID(clientID)
	if err != nil {
		return err
	}
	return c.writeID(serverID)
}

// setIDField stores a known RFC 2971 field; others are ignored.
func setIDField(data *imap.IDData, field, value string) {
	switch field {
	case "name":
		data.Name = value
	case "version":
		data.Version = value
	case "os":
		data.OS = value
	case "os-version":
		data.OSVersion = value
	case "vendor":
		data.Vendor = value
	case "support-url":
		data.SupportURL = value
	case "address":
		data.Address = value
	case "date":
		data.Date = value
	case "command":
		data.Command = value
	case "arguments":
		data.Arguments = value
	case "environment":
		data.Environment = value
	}
}

func (c *Conn) writeID(data *imap.IDData) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("ID").SP()
	if data == nil {
		enc.NIL()
		return enc.CRLF()
	}
	fields := []struct{ k, v string }{
		{"name", data.Name},
		{"version", data.Version},
		{"os", data.OS},
		{"os-version", data.OSVersion},
		{"vendor", data.Vendor},
		{"support-url", data.SupportURL},
		{"address", data.Address},
		{"date", data.Date},
		{"command", data.Command},
		{"arguments", data.Arguments},
		{"environment", data.Environment},
	}
	var l []string
	for _, f := range fields {
		if f.v != "" {
			l = append(l, f.k, f.v)
		}
	}
	if len(l) == 0 {
		enc.NIL()
		return enc.CRLF()
	}
	enc.List(len(l)/2, func(i int) {
		enc.String(l[2*i]).SP().String(l[2*i+1])
	})
	return enc.CRLF()
}
