package imap

import (
	"bytes"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

var systemFlags = []struct {
	flag imap.Flag
	bit  mailboxv1.Flag
}{
	{imap.FlagSeen, mailboxv1.Flag_FLAG_SEEN}, {imap.FlagAnswered, mailboxv1.Flag_FLAG_ANSWERED},
	{imap.FlagFlagged, mailboxv1.Flag_FLAG_FLAGGED}, {imap.FlagDeleted, mailboxv1.Flag_FLAG_DELETED},
	{imap.FlagDraft, mailboxv1.Flag_FLAG_DRAFT},
}

// flagsToProto splits flags into system bits and keywords. \Recent is
// never stored and is dropped.
func flagsToProto(flags []imap.Flag) *mailboxv1.Flags {
	out := &mailboxv1.Flags{}
next:
	for _, f := range flags {
		for _, sf := range systemFlags {
			if strings.EqualFold(string(f), string(sf.flag)) {
				out.System |= uint32(sf.bit)
				continue next
			}
		}
		if strings.HasPrefix(string(f), `\`) {
			continue
		}
		out.Keywords = append(out.Keywords, string(f))
	}
	return out
}

func flagsFromProto(f *mailboxv1.Flags) []imap.Flag {
	out := []imap.Flag{}
	for _, sf := range systemFlags {
		if f.GetSystem()&uint32(sf.bit) != 0 {
			out = append(out, sf.flag)
		}
	}
	for _, k := range f.GetKeywords() {
		out = append(out, imap.Flag(k))
	}
	return out
}

// validFlag refuses unknown system flags (\Recent may not be stored either)
// and keywords that are not atoms.
func validFlag(f imap.Flag) bool {
	s := string(f)
	if strings.HasPrefix(s, `\`) {
		for _, sf := range systemFlags {
			if strings.EqualFold(s, string(sf.flag)) {
				return true
			}
		}
		return false
	}
	return s != "" && len(s) <= 128
}

func addressesFromProto(in []*mailboxv1.Address) []imap.Address {
	if len(in) == 0 {
		return nil
	}
	out := make([]imap.Address, 0, len(in))
	for _, a := range in {
		switch {
		case a.GroupStart:
			out = append(out, imap.Address{Mailbox: a.Name})
		case a.GroupEnd:
			out = append(out, imap.Address{})
		default:
			out = append(out, imap.Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host})
		}
	}
	return out
}

// msgIDs returns the ids in a Message-ID or In-Reply-To header, without
// angle brackets.
func msgIDs(s string) []string {
	var out []string
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		out = append(out, s[i+1:i+j])
		s = s[i+j+1:]
	}
	if len(out) == 0 && strings.TrimSpace(s) != "" {
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

// parseDate reads a Date header; the common RFC 5322 form is tried first,
// without the error allocations of net/mail's layout search. Unreadable
// dates give the zero time (ENVELOPE date NIL).
func parseDate(s string) time.Time {
	s = strings.TrimSpace(s)
	for _, layout := range []string{"Mon, 2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 -0700"} {
		if len(s) >= len(layout)-2 && len(s) <= len(layout)+1 && (s[0] >= '0' && s[0] <= '9') == (layout[0] == '2') {
			if t, err := time.Parse(layout, s); err == nil {
				return t
			}
		}
	}
	if t, err := mail.ParseDate(s); err == nil {
		return t
	}
	return time.Time{}
}

func envelopeFromProto(e *mailboxv1.Envelope) *imap.Envelope {
	if e == nil {
		return &imap.Envelope{}
	}
	out := &imap.Envelope{
		Subject: e.Subject, From: addressesFromProto(e.From), Sender: addressesFromProto(e.Sender),
		ReplyTo: addressesFromProto(e.ReplyTo), To: addressesFromProto(e.To), Cc: addressesFromProto(e.Cc),
		Bcc: addressesFromProto(e.Bcc), InReplyTo: msgIDs(e.InReplyTo),
	}
	out.Date = parseDate(e.Date)
	if ids := msgIDs(e.MessageId); len(ids) > 0 {
		out.MessageID = ids[0]
	}
	return out
}

func dispositionOf(bs *mailboxv1.BodyStructure) *imap.BodyStructureDisposition {
	if bs.Disposition == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: bs.Disposition, Params: bs.DispositionParams}
}

// bodyStructureFromProto always fills the extension data, which imapserver
// needs for BODYSTRUCTURE and leaves out for BODY.
func bodyStructureFromProto(bs *mailboxv1.BodyStructure) imap.BodyStructure {
	if bs == nil {
		bs = &mailboxv1.BodyStructure{Type: "text", Subtype: "plain"}
	}
	if strings.EqualFold(bs.Type, "multipart") && len(bs.Parts) > 0 {
		mp := &imap.BodyStructureMultiPart{Subtype: bs.Subtype, Extended: &imap.BodyStructureMultiPartExt{
			Params: bs.Params, Disposition: dispositionOf(bs), Language: bs.Language, Location: bs.Location}}
		for _, p := range bs.Parts {
			mp.Children = append(mp.Children, bodyStructureFromProto(p))
		}
		return mp
	}
	typ, sub := bs.Type, bs.Subtype
	if typ == "" || strings.EqualFold(typ, "multipart") {
		typ, sub = "text", "plain"
	}
	sp := &imap.BodyStructureSinglePart{
		Type: typ, Subtype: sub, Params: bs.Params, ID: bs.Id, Description: bs.Description,
		Encoding: bs.Encoding, Size: uint32(min(bs.Size, 1<<32-1)),
		Extended: &imap.BodyStructureSinglePartExt{Disposition: dispositionOf(bs), Language: bs.Language, Location: bs.Location},
	}
	switch {
	case strings.EqualFold(typ, "message") && strings.EqualFold(sub, "rfc822") && bs.Message != nil:
		sp.MessageRFC822 = &imap.BodyStructureMessageRFC822{Envelope: envelopeFromProto(bs.Envelope),
			BodyStructure: bodyStructureFromProto(bs.Message), NumLines: bs.Lines}
	case strings.EqualFold(typ, "text"):
		sp.Text = &imap.BodyStructureText{NumLines: bs.Lines}
	}
	return sp
}

// filterHeader keeps (or, with not, drops) the named fields of a header
// block, folded lines included, and ends with the empty line (RFC 9051
// HEADER.FIELDS).
func filterHeader(hdr []byte, names []string, not bool) []byte {
	want := func(line []byte) bool {
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			return false
		}
		name := strings.TrimSpace(string(line[:i]))
		for _, n := range names {
			if strings.EqualFold(n, name) {
				return !not
			}
		}
		return not
	}
	var out bytes.Buffer
	keep := false
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line = hdr[:i+1]
		}
		hdr = hdr[len(line):]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // end of the header
		}
		if line[0] != ' ' && line[0] != '\t' {
			keep = want(line)
		}
		if keep {
			out.Write(line)
			if !bytes.HasSuffix(line, []byte("\n")) {
				out.WriteString("\r\n")
			}
		}
	}
	out.WriteString("\r\n")
	return out.Bytes()
}

// ---- search ----

func and(keys ...*mailboxv1.SearchKey) *mailboxv1.SearchKey {
	if len(keys) == 1 {
		return keys[0]
	}
	if len(keys) == 0 {
		return &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_ALL}
	}
	return &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_AND, Children: keys}
}

var nothing = &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_NOT, Children: []*mailboxv1.SearchKey{{Op: mailboxv1.SearchKey_OP_ALL}}}

func flagKey(f imap.Flag, has bool) *mailboxv1.SearchKey {
	op := mailboxv1.SearchKey_OP_FLAG
	if !has {
		op = mailboxv1.SearchKey_OP_NO_FLAG
	}
	if strings.EqualFold(string(f), `\Recent`) {
		if has {
			return nothing // no message is ever \Recent
		}
		return &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_ALL}
	}
	for _, sf := range systemFlags {
		if strings.EqualFold(string(f), string(sf.flag)) {
			return &mailboxv1.SearchKey{Op: op, Number: uint64(sf.bit)}
		}
	}
	return &mailboxv1.SearchKey{Op: op, Text: string(f)}
}

func timeKey(op mailboxv1.SearchKey_Op, t time.Time) *mailboxv1.SearchKey {
	return &mailboxv1.SearchKey{Op: op, Time: t.Unix()}
}

// searchKey converts criteria into the backend's tree; sequence sets are
// resolved to UIDs with the session's numbering.
func (ss *session) searchKey(c *imap.SearchCriteria) *mailboxv1.SearchKey {
	var keys []*mailboxv1.SearchKey
	var sets []imap.NumSet
	for _, set := range c.SeqNum {
		sets = append(sets, set)
	}
	for _, set := range c.UID {
		sets = append(sets, set)
	}
	for _, set := range sets {
		ts := ss.resolve(set)
		if len(ts) == 0 {
			keys = append(keys, nothing)
			continue
		}
		keys = append(keys, &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_UID, Uids: uidSetOf(uidsOf(ts))})
	}
	if !c.Since.IsZero() {
		keys = append(keys, timeKey(mailboxv1.SearchKey_OP_SINCE, c.Since))
	}
	if !c.Before.IsZero() {
		keys = append(keys, timeKey(mailboxv1.SearchKey_OP_BEFORE, c.Before))
	}
	if !c.SentSince.IsZero() {
		keys = append(keys, timeKey(mailboxv1.SearchKey_OP_SENT_SINCE, c.SentSince))
	}
	if !c.SentBefore.IsZero() {
		keys = append(keys, timeKey(mailboxv1.SearchKey_OP_SENT_BEFORE, c.SentBefore))
	}
	for _, h := range c.Header {
		keys = append(keys, &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_HEADER, Field: h.Key, Text: h.Value})
	}
	for _, b := range c.Body {
		keys = append(keys, &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_BODY, Text: b})
	}
	for _, t := range c.Text {
		keys = append(keys, &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_TEXT, Text: t})
	}
	for _, f := range c.Flag {
		keys = append(keys, flagKey(f, true))
	}
	for _, f := range c.NotFlag {
		keys = append(keys, flagKey(f, false))
	}
	if c.Larger > 0 {
		keys = append(keys, &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_LARGER, Number: uint64(c.Larger)})
	}
	if c.Smaller > 0 {
		keys = append(keys, &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_SMALLER, Number: uint64(c.Smaller)})
	}
	for i := range c.Not {
		keys = append(keys, &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_NOT, Children: []*mailboxv1.SearchKey{ss.searchKey(&c.Not[i])}})
	}
	for i := range c.Or {
		keys = append(keys, &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_OR,
			Children: []*mailboxv1.SearchKey{ss.searchKey(&c.Or[i][0]), ss.searchKey(&c.Or[i][1])}})
	}
	if c.ModSeq != nil {
		keys = append(keys, &mailboxv1.SearchKey{Op: mailboxv1.SearchKey_OP_MODSEQ, Number: c.ModSeq.ModSeq})
	}
	return and(keys...)
}

// hasModSeq reports whether a criteria tree uses MODSEQ (RFC 7162 section
// 3.1.5: the result then carries the highest MODSEQ found).
func hasModSeq(k *mailboxv1.SearchKey) bool {
	if k.Op == mailboxv1.SearchKey_OP_MODSEQ {
		return true
	}
	for _, c := range k.Children {
		if hasModSeq(c) {
			return true
		}
	}
	return false
}

// depthOf is the nesting depth of a criteria tree (a leaf is 1).
func depthOf(k *mailboxv1.SearchKey) int {
	d := 0
	for _, c := range k.Children {
		d = max(d, depthOf(c))
	}
	return d + 1
}
