// Package filestore is a state.Store in a file, on the embedded database
// go.etcd.io/bbolt: a session that survives a killed process.
//
// The file holds one bucket per state.Kind, keyed as the records are
// (packet id, queue position, topic filter), and a header bucket naming
// the format and its version. Each Commit of the session is one bbolt
// read-write transaction (Apply), atomic and, unless Options.NoSync,
// synced to disk before it returns.
//
// A Store is used by one session (one event loop) at a time; the file is
// locked while open, so a second process opening it waits for
// Options.Timeout and then fails with ErrLocked. The package starts no
// goroutines.
package filestore
