package netio

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

// Migrator is implemented by connections that can move to another network
// path without a new connection: quic:// (QUIC connection migration, RFC
// 9000 section 9). After a change of network (Wi-Fi to cellular) or a NAT
// rebinding, the connection, and the MQTT session on it, simply continue
// from a new local address.
//
// Like every Conn method, these are called from the event loop's goroutine
// and none of them blocks: the path is validated by quic-go's goroutines,
// and the Readiness returned by Arm signals when the answer to a path probe
// arrives, so that the loop calls StepMigration again.
type Migrator interface {
	// PathStalled reports whether the current path has stopped answering:
	// nothing at all arrived from the server for QUICStallProbes+1 QUIC
	// probe timeouts (and at least 250 ms) while a packet waited for its
	// acknowledgement, or QUIC's own probe timeout fired QUICStallProbes
	// times in a row. The Readiness signals when that happens. A
	// migration, or any packet from the server, clears it.
	PathStalled() bool

	// StartMigration opens a new UDP socket, bound to local (the zero Addr:
	// any address, the way the first socket was opened) on a new port, and
	// starts validating the path from it to the server (a PATH_CHALLENGE).
	// It returns at once. A migration already under way is abandoned
	// first. It fails with ErrMigrationUnsupported when the server
	// disabled active migration, and with ErrTooManyPaths when the
	// connection has used MaxQUICPaths sockets: quic-go cannot release the
	// socket of a path the connection left while the connection lives, so
	// each migration keeps one socket (and one quic-go goroutine) until
	// the connection closes.
	StartMigration(local netip.Addr, now time.Time) error

	// StepMigration advances the migration under way. Once the new path is
	// validated it switches the connection to it (from then on every
	// packet leaves from the new socket; data the old path lost is
	// retransmitted on the new one by QUIC) and reports Done. Until then
	// it resends the probe when due (the interval doubles from 200 ms)
	// and reports when to call it again. Without a migration under way it
	// returns the zero status.
	StepMigration(now time.Time) (MigrationStatus, error)

	// CancelMigration abandons the migration under way, if any.
	CancelMigration()

	// LocalAddr returns the local address of the path in use.
	LocalAddr() net.Addr
}

// MigrationStatus is what StepMigration reports.
type MigrationStatus struct {
	// Active says a migration is under way (or just completed).
	Active bool
	// Done says the connection switched to the new path.
	Done bool
	// From and To are the local addresses before and after the switch.
	From, To net.Addr
	// Next is when StepMigration should be called again at the latest,
	// while the migration is under way.
	Next time.Time
}

// MaxQUICPaths is how many UDP sockets one quic:// connection may use over
// its life: the one it was dialed from and those of its migrations.
const MaxQUICPaths = 16

// QUICStallProbes is how many consecutive QUIC probe timeouts without an
// acknowledgement make a path stalled (see Migrator.PathStalled). A probe
// timeout is the smoothed round trip plus four times its variation plus
// the peer's maximum ACK delay (25 ms for quic-go), doubling at each
// consecutive one. quic-go restarts its probe timer with every packet
// sent, so a client that keeps publishing never sees it fire; the silence
// of QUICStallProbes+1 probe timeouts (at least 250 ms) while a packet
// waits counts too, which is what notices a dead path under traffic.
const QUICStallProbes = 2

// Errors of connection migration.
var (
	// ErrMigrationUnsupported: the connection cannot migrate (the server
	// disabled active migration, or the transport has no such thing).
	ErrMigrationUnsupported = errors.New("netio: connection migration not supported")
	// ErrTooManyPaths: the connection has used MaxQUICPaths sockets.
	ErrTooManyPaths = errors.New("netio: too many network paths for one QUIC connection")
	// ErrPathValidation: the new path was closed before it was validated.
	ErrPathValidation = errors.New("netio: new network path failed validation")
)
