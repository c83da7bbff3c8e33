package mqtttest

import (
	"log/slog"
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttloop/mqttloop/internal/leakcheck"
)

// listener is a mochi listeners.Listener over a net.Listener that, unlike
// mochi's own, keeps track of its connections and goroutines: Close closes
// every connection (also those that never sent CONNECT, on which mochi's
// Close would wait forever) and waits until every connection's goroutine
// has returned.
type listener struct {
	id     string
	ln     net.Listener
	owners *owners
	hook   *hook
	log    *slog.Logger
	// disconnectAll ends the sessions of the clients that completed
	// CONNECT; it replaces mochi's CloseFn (see Close).
	disconnectAll func()

	mu        sync.Mutex
	closed    bool
	conns     map[net.Conn]struct{}
	serving   bool
	serveDone chan struct{}
	wg        sync.WaitGroup // one per connection goroutine
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id string, ln net.Listener, o *owners, h *hook, disconnectAll func()) *listener {
	return &listener{
		id:            id,
		ln:            ln,
		owners:        o,
		hook:          h,
		disconnectAll: disconnectAll,
		log:           slog.New(slog.DiscardHandler),
		conns:         map[net.Conn]struct{}{},
		serveDone:     make(chan struct{}),
	}
}

// Init implements listeners.Listener.
func (l *listener) Init(log *slog.Logger) error {
	if log != nil {
		l.log = log
	}
	return nil
}

// ID implements listeners.Listener.
func (l *listener) ID() string { return l.id }

// Address implements listeners.Listener.
func (l *listener) Address() string { return l.ln.Addr().String() }

// Protocol implements listeners.Listener.
func (l *listener) Protocol() string { return "tcp" }

// Serve implements listeners.Listener: it accepts connections until the
// listener is closed and hands each to establish on a goroutine of its own.
func (l *listener) Serve(establish listeners.EstablishFn) {
	l.owners.add(leakcheck.CurrentID())
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.serving = true
	l.mu.Unlock()
	defer close(l.serveDone)

	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return // closed; a loopback listener has no other errors worth retrying
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = conn.Close()
			return
		}
		l.conns[conn] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		l.hook.track(conn)

		go func() {
			defer l.wg.Done()
			l.owners.add(leakcheck.CurrentID())
			if err := establish(l.id, conn); err != nil {
				l.log.Debug("connection ended", "error", err, "remote", conn.RemoteAddr().String())
			}
			_ = conn.Close()
			l.hook.untrack(conn)
			l.mu.Lock()
			delete(l.conns, conn)
			l.mu.Unlock()
		}()
	}
}

// Close implements listeners.Listener. It does not call mochi's CloseFn
// (Server.closeListenerClients): that calls Clients.GetByListener, which
// takes the clients' read lock twice and so deadlocks when a client
// disconnects at that moment (a writer waiting between the two read locks
// blocks the second). disconnectAll does the same work from a copy of the
// client list.
func (l *listener) Close(listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	serving := l.serving
	l.mu.Unlock()

	l.disconnectAll()
	_ = l.ln.Close()
	if serving {
		<-l.serveDone
	}
	// No connection is added any more: close those left, including any that
	// had not sent CONNECT or completed it after closeClients looked.
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
