// Package rawbroker is a scripted TCP "broker" for tests of bad input: the
// test accepts the client's connection and decides byte by byte what the
// client reads — garbage, oversized remaining lengths, malformed packets,
// acknowledgements for packet ids never used.
//
//	srv := rawbroker.Listen(t)
//	// start the client against srv.URL() ...
//	peer, err := srv.Accept(ctx)
//	connect, err := peer.ExpectConnect()
//	err = peer.SendConnack(false, 0, nil)
//	err = peer.Write([]byte{0x40, 0x02, 0x12, 0x34}) // PUBACK for an unknown id
//
// Packets are decoded and encoded with github.com/eclipse/paho.golang/packets,
// which speaks MQTT 5 only; for MQTT 3.1.1 use ReadRawPacket and Write.
package rawbroker
