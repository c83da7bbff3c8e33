// Package faultproxy is a fault-injecting TCP proxy for tests: it sits on a
// loopback port between a client and a broker (or any TCP server) and, on
// command, cuts connections, swallows bytes, stalls, delays or fragments the
// stream, or refuses new connections.
//
//	p := faultproxy.StartT(t, broker.Addr())
//	// point the client at p.URL() instead of the broker ...
//	p.SetChunkSize(1)                        // byte-at-a-time delivery
//	p.CutAfter(faultproxy.ClientToServer, 7) // cut in the middle of a packet
//	p.Blackhole(true)                        // half-open connection
//	p.CutEvery(42, 100, 5000)                // seeded, replayable cuts
//	p.CutAll()                               // cut when the test chooses
//
// Every fault can be switched at any time from any goroutine and applies to
// the connections open at that moment as well as to later ones.
//
// # Pipeline
//
// Each accepted connection is paired with a fresh connection to the upstream
// address. Each direction has a reader, which reads what one side sends and
// queues it as chunks (one chunk per Read, at most 32 KiB), and a writer,
// which delivers the queued chunks to the other side. Faults act as follows:
//
//   - Delay: a chunk is written once the direction's delay has passed since it
//     was read; the delay in force at that moment counts, so lowering it
//     releases waiting chunks early. Order is always kept.
//   - Chunk size and gap: the writer splits a chunk into pieces of at most the
//     chunk size and issues one Write per piece (the connections have
//     TCP_NODELAY, so each piece leaves as its own segment), waiting the gap
//     after each Write.
//   - Blackhole: a piece the writer would write while the blackhole is on is
//     dropped instead and counted in Stats.Discarded; a side's close (EOF or
//     reset) is held until the blackhole is off, so the other side does not
//     see it either. Bytes the proxy has read are lost; bytes a side sends
//     are still read, so its writes keep succeeding. BlackholeOpen does the
//     same to the connections open at that moment only, for good: a path
//     that died while new connections work.
//   - Stall: the readers stop reading and the writers stop writing, without
//     dropping anything; bytes pile up in the kernel buffers (the sender's
//     writes block once they are full) and flow again, intact, when the stall
//     ends.
//   - Cuts (CutAll, ResetAll, CutAfter, CutEvery): the proxy closes both of
//     its sockets of a connection. The sides see EOF, or a reset (ECONNRESET,
//     EPIPE) when the cut is a reset or when they had sent bytes the proxy had
//     not read yet. Chunks queued inside the proxy are dropped.
//
// When one side half-closes (EOF), the proxy half-closes its socket to the
// other side (CloseWrite); the connection ends when both directions have
// ended. A reset or read error from a side resets the connection to the
// other side. If the upstream cannot be dialed, the accepted connection is
// closed (after the blackhole, if one is on).
package faultproxy
