package imap

import (
	"context"
	"log/slog"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

var (
	_ imapserver.SessionID    = (*session)(nil)
	_ imapserver.SessionQuota = (*session)(nil)
)

// serverID is the whole of what ID tells a client about the server: no
// version, OS or host.
var serverID = &imap.IDData{Name: "mailcluster"}

// ID answers RFC 2971 ID in any state. imapserver has already refused
// (BAD) more than 30 pairs, fields over 30 octets, values over 1024 octets
// and repeated fields, so what is logged here is bounded.
func (ss *session) ID(client *imap.IDData) (*imap.IDData, error) {
	if client != nil && ss.log.Enabled(ss.ctx, slog.LevelDebug) {
		var attrs []any
		for _, f := range []struct{ k, v string }{
			{"name", client.Name}, {"version", client.Version}, {"os", client.OS},
			{"os-version", client.OSVersion}, {"vendor", client.Vendor}, {"support-url", client.SupportURL},
			{"address", client.Address}, {"date", client.Date}, {"command", client.Command},
			{"arguments", client.Arguments}, {"environment", client.Environment},
		} {
			if f.v != "" {
				attrs = append(attrs, slog.String("id."+f.k, f.v))
			}
		}
		ss.log.Debug("imap: client ID", attrs...)
	}
	return serverID, nil
}

// quotaRoot is the name of the one quota root, the account (RFC 9208
// section 3.2: every mailbox of the account shares it).
const quotaRoot = ""

var errNoQuotaRoot = no(imap.ResponseCodeNonExistent, "No such quota root")

// GetQuota answers GETQUOTA "": the directory's limits with the backend's
// usage. An account without limits has no quota root.
func (ss *session) GetQuota(root string) (_ *imap.QuotaData, err error) {
	defer ss.track("getquota", &err)()
	if root != quotaRoot || !ss.hasQuota() {
		return nil, errNoQuotaRoot
	}
	d, err := ss.quotaData()
	if err != nil {
		return nil, ss.fail("getquota", err, nil)
	}
	return d, nil
}

// GetQuotaRoot answers GETQUOTAROOT: every existing mailbox is under the
// account's root, or under none when the account has no limits.
func (ss *session) GetQuotaRoot(mailbox string) (_ []imap.QuotaData, err error) {
	defer ss.track("getquotaroot", &err)()
	name, err := ss.lookupName(mailbox)
	if err != nil {
		return nil, err
	}
	_, err = call(ss, true, func(ctx context.Context, c mailboxv1.MailboxClient) (*mailboxv1.MailboxStatus, error) {
		return c.GetStatus(ctx, &mailboxv1.GetStatusRequest{AccountId: ss.acct.ID, Name: name})
	})
	if err != nil {
		return nil, ss.fail("getquotaroot", err, nil)
	}
	if !ss.hasQuota() {
		return nil, nil
	}
	d, err := ss.quotaData()
	if err != nil {
		return nil, ss.fail("getquotaroot", err, nil)
	}
	return []imap.QuotaData{*d}, nil
}

func (ss *session) hasQuota() bool {
	return ss.acct.Quota.StorageBytes > 0 || ss.acct.Quota.Messages > 0
}

// quotaData reports the limited resources: STORAGE in units of 1024
// octets (usage rounded up, the limit down: RFC 9208 section 5.1) and
// MESSAGE.
func (ss *session) quotaData() (*imap.QuotaData, error) {
	used, err := call(ss, true, func(ctx context.Context, c mailboxv1.MailboxClient) (*mailboxv1.GetQuotaResponse, error) {
		return c.GetQuota(ctx, &mailboxv1.GetQuotaRequest{AccountId: ss.acct.ID})
	})
	if err != nil {
		return nil, err
	}
	q := ss.acct.Quota
	d := &imap.QuotaData{Root: quotaRoot, Resources: map[imap.QuotaResourceType]imap.QuotaResourceData{}}
	if q.StorageBytes > 0 {
		d.Resources[imap.QuotaResourceStorage] = imap.QuotaResourceData{Usage: (used.StorageBytes + 1023) / 1024, Limit: q.StorageBytes / 1024}
	}
	if q.Messages > 0 {
		d.Resources[imap.QuotaResourceMessage] = imap.QuotaResourceData{Usage: used.Messages, Limit: q.Messages}
	}
	return d, nil
}
