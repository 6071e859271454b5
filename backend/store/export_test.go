package store

// The statements whose plans TestChangesPlan checks.
const (
	ChangedSinceSQL  = changedSinceSQL
	ExpungedSinceSQL = expungedSinceSQL
)
