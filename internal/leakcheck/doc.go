// Package leakcheck finds goroutines that a piece of code started and did not
// stop, using only the standard library.
//
// It works on goroutine dumps (runtime.Stack with all=true): a Snapshot is the
// set of goroutines alive at one moment, keyed by goroutine id. Go never reuses
// a goroutine id within a process, so the goroutines of a later snapshot whose
// ids are absent from an earlier one were started in between.
//
// Two ways to use it:
//
//	func TestX(t *testing.T) {
//		leakcheck.VerifyNone(t) // first line: the check runs after all later cleanups
//		...
//	}
//
// or, to prove that a piece of code starts no goroutine at all:
//
//	before := leakcheck.Snapshot()
//	run()
//	if extra := leakcheck.Snapshot().New(before); len(extra) > 0 { ... }
//
// The checks see every goroutine of the process, so they must not run while
// tests marked with t.Parallel are running in the same package.
package leakcheck
