package netio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"
)

// quicSocket is a UDP socket and the quic-go Transport over it.
type quicSocket struct {
	udp *net.UDPConn
	tr  *quic.Transport
}

// close closes the transport (waiting for its receive goroutine) and the
// socket.
func (s quicSocket) close() error {
	err := s.tr.Close()
	if cerr := s.udp.Close(); err == nil {
		err = cerr
	}
	return err
}

// quicMigration is a migration under way.
type quicMigration struct {
	path     *quic.Path
	sock     quicSocket
	from     net.Addr
	next     time.Time     // when to probe again
	interval time.Duration // until the next probe; doubles
}

// quicProbeInterval is the first interval between path probes: quic-go's
// own initial RTT estimate for a new path, which Path.Probe uses.
const quicProbeInterval = 200 * time.Millisecond

// expired is a context that is already done. Path.Probe blocks until the
// path is validated or its context ends; called with this one it only
// (re)starts the validation, queueing a PATH_CHALLENGE that quic-go's
// connection goroutine sends, and returns at once. The loop learns the
// outcome from the tracer (a PATH_RESPONSE arrived) and Path.Switch, which
// refuses an unvalidated path, and resends the probe on its own schedule:
// this is Probe's retry loop, run by the loop instead of a goroutine.
var expired = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

var _ Migrator = (*quicConn)(nil)

// PathStalled implements Migrator.
func (q *quicConn) PathStalled() bool { return q.ready.stalled() }

// LocalAddr implements Migrator.
// (quic-go's Conn.LocalAddr changes only when its goroutine gets to the
// switch, and reads a field that goroutine writes.)
func (q *quicConn) LocalAddr() net.Addr {
	if q.local != nil {
		return q.local
	}
	return q.udp.LocalAddr()
}

// StartMigration implements Migrator.
func (q *quicConn) StartMigration(local netip.Addr, now time.Time) error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.leave()
	if q.early {
		return fmt.Errorf("%w: the handshake is not complete", ErrMigrationUnsupported)
	}
	q.CancelMigration()
	q.pathsMu.Lock()
	used := 1 + len(q.paths)
	q.pathsMu.Unlock()
	if used >= MaxQUICPaths {
		return fmt.Errorf("%w (%d)", ErrTooManyPaths, MaxQUICPaths)
	}
	var laddr *net.UDPAddr
	if local.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
	}
	udp, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return fmt.Errorf("netio: opening a UDP socket for the new path: %w", err)
	}
	sock := quicSocket{udp: udp, tr: &quic.Transport{Conn: udp}}
	path, err := q.conn.AddPath(sock.tr)
	if err != nil {
		_ = sock.close()
		return fmt.Errorf("%w: %w", ErrMigrationUnsupported, err)
	}
	// From here the transport may hold the connection (quic-go registers
	// it there when the first probe goes out), and closing the transport
	// would end the connection: keep it until Close.
	q.pathsMu.Lock()
	if q.closed.Load() {
		q.pathsMu.Unlock()
		_ = path.Close()
		_ = sock.close()
		return errQUICClosed
	}
	q.paths = append(q.paths, sock)
	q.pathsMu.Unlock()
	q.mig = &quicMigration{path: path, sock: sock, from: q.LocalAddr(), interval: quicProbeInterval}
	q.probe(now)
	return nil
}

// probe (re)sends the path probe without waiting for its answer.
func (q *quicConn) probe(now time.Time) {
	m := q.mig
	err := m.path.Probe(expired)
	_ = err // context.Canceled: the probe is queued; ErrPathClosed shows in Switch
	m.next = now.Add(m.interval)
	m.interval *= 2
}

// StepMigration implements Migrator.
func (q *quicConn) StepMigration(now time.Time) (MigrationStatus, error) {
	m := q.mig
	if m == nil {
		return MigrationStatus{}, nil
	}
	if err := q.enter(); err != nil {
		return MigrationStatus{}, err
	}
	defer q.leave()
	switch err := m.path.Switch(); {
	case err == nil:
		q.mig = nil
		q.local = m.sock.udp.LocalAddr()
		q.ready.migrated()
		return MigrationStatus{Active: true, Done: true, From: m.from, To: m.sock.udp.LocalAddr()}, nil
	case errors.Is(err, quic.ErrPathNotValidated):
	default:
		q.mig = nil
		return MigrationStatus{}, fmt.Errorf("%w: %w", ErrPathValidation, err)
	}
	if !now.Before(m.next) {
		q.probe(now)
	}
	return MigrationStatus{Active: true, Next: m.next}, nil
}

// CancelMigration implements Migrator. The path's socket stays open until
// Close (see StartMigration).
func (q *quicConn) CancelMigration() {
	if q.mig == nil {
		return
	}
	_ = q.mig.path.Close()
	q.mig = nil
}
