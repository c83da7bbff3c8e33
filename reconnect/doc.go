// Package reconnect decides whether and when an event loop connects again
// after a connection fails or is lost. It is pure: no clock reads, no
// goroutines.
package reconnect
