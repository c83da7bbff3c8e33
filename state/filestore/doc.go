// Package filestore is a state.Store in a file: a session that survives a
// killed process.
//
// The file is a log (FORMAT.md in this directory): each Commit of the
// session appends one frame, its batch of records closed by a CRC-32C,
// and then points the file's root at it. Unless Options.NoSync, the frame
// is on disk (fsync) before Commit returns; one fsync per commit. When
// more than half of the log is out of date, the store rewrites it as one
// snapshot of the session, so the file stays within a few times the
// session's size.
//
// Open reads and checks the whole file before it returns, without mapping
// it into memory: a damaged, truncated, empty or foreign file is an error
// wrapping state.ErrCorruptState, never a crash, a hang or a silently empty
// session; time and memory are bounded by the file's size. A failed Open
// leaves nothing open or locked.
//
// The values of queued records (state.KindQueued: requests not yet sent,
// the whole backlog of an offline spool, state.Spool) are not held in
// memory: the store keeps where each one is in the file (about 24 bytes a
// record) and Scan reads them from there. Opening reads the log one frame
// at a time, and a compaction copies them a chunk at a time.
//
// A Store is used by one session (one event loop) at a time; the file is
// locked while open (flock on Unix, an exclusive open on Windows; on other
// systems only Stores of one process exclude each other), so a second
// process opening it waits for Options.Timeout and then fails with
// ErrLocked. The package starts no goroutines.
package filestore
