package wire

import (
	"bytes"
	"io"
	"os"
	"time"
)

// memConn is an in-memory Conn: reads return the queued chunks one at a
// time (never more than one chunk per read), writes are recorded.
type memConn struct {
	chunks [][]byte
	eof    bool // after the chunks, reads return io.EOF

	out            bytes.Buffer
	writes         int
	writeErr       error
	shortWrite     bool
	writeDeadline  time.Time
	deadlineCalls  int
	deadlineErr    error
	readNowCalls   int
	readWaitCalls  int
	lastReadLength int
}

var (
	_ Source = (*memConn)(nil)
	_ Sink   = (*memConn)(nil)
)

func (m *memConn) push(b ...[]byte) { m.chunks = append(m.chunks, b...) }

func (m *memConn) read(p []byte) (int, bool) {
	m.lastReadLength = len(p)
	if len(m.chunks) == 0 {
		return 0, false
	}
	n := copy(p, m.chunks[0])
	m.chunks[0] = m.chunks[0][n:]
	if len(m.chunks[0]) == 0 {
		m.chunks = m.chunks[1:]
	}
	return n, true
}

func (m *memConn) ReadNow(p []byte) (int, error) {
	m.readNowCalls++
	if n, ok := m.read(p); ok {
		return n, nil
	}
	if m.eof {
		return 0, io.EOF
	}
	return 0, nil
}

func (m *memConn) ReadWait(p []byte, _ time.Time) (int, error) {
	m.readWaitCalls++
	if n, ok := m.read(p); ok {
		return n, nil
	}
	if m.eof {
		return 0, io.EOF
	}
	return 0, os.ErrDeadlineExceeded
}

func (m *memConn) Write(p []byte) (int, error) {
	m.writes++
	if m.writeErr != nil {
		return len(p) / 2, m.writeErr
	}
	if m.shortWrite {
		m.out.Write(p[:len(p)-1])
		return len(p) - 1, nil
	}
	return m.out.Write(p)
}

func (m *memConn) SetWriteDeadline(t time.Time) error {
	m.deadlineCalls++
	m.writeDeadline = t
	return m.deadlineErr
}
