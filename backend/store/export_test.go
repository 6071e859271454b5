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

var ChangesSQL = changesSQL

// SearchSQL is searchSQL, for the plan test (trees without "*").
func (s *Store) SearchSQL(ctx context.Context, account string, mailboxID int64, key *mailboxv1.SearchKey) (string, []any, error) {
	return s.searchSQL(ctx, nil, account, mailboxID, key)
}

// FetchSQL is fetchSQL, for the plan test.
func FetchSQL(envelope bool, ranges int) string {
	return fetchSQL(FetchOptions{Envelope: envelope}, ranges)
}

// OutsideTx is outsideTx, for its test.
func OutsideTx(sql string) ([]string, bool) { return outsideTx(sql) }
