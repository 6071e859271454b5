package imap

import (
	"mailcluster/frontend/pool"
	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// PoolRouter adapts the frontend's backend pool to Router and
// RouterFeedback: accounts go to their mailHost while it is healthy, else
// to a healthy substitute, and a backend found unreachable is marked down
// at once.
func PoolRouter(p *pool.Pool) Router { return poolRouter{p} }

type poolRouter struct{ p *pool.Pool }

func (r poolRouter) Route(accountID, mailHost string) (mailboxv1.MailboxClient, error) {
	b, err := r.p.Route(accountID, mailHost)
	if err != nil {
		return nil, err
	}
	return b.Client, nil
}

func (r poolRouter) Unreachable(c mailboxv1.MailboxClient) {
	for _, name := range r.p.Names() {
		if b := r.p.Backend(name); b != nil && b.Client == c {
			r.p.MarkDown(b)
		}
	}
}
