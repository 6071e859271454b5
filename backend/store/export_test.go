package store

import (
	"context"

	mailboxv1 "mailcluster/proto/mailbox/v1"
)

// The statements whose plans TestHotStatementPlans checks.
const (
	ChangedSinceSQL  = changedSinceSQL
	ExpungedSinceSQL = expungedSinceSQL
)

// SearchSQL is searchSQL, for the plan test (trees without "*").
func (s *Store) SearchSQL(ctx context.Context, account string, mailboxID int64, key *mailboxv1.SearchKey) (string, []any, error) {
	return s.searchSQL(ctx, nil, account, mailboxID, key)
}
