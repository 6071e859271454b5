package store

// SetBackfillHook makes BackfillEnvelopes call f after reading each batch
// and before writing it, to change rows in between; the returned function
// removes it.
func SetBackfillHook(f func()) (restore func()) {
	old := backfillHook
	backfillHook = f
	return func() { backfillHook = old }
}
