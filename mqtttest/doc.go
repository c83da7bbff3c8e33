// Package mqtttest runs an MQTT broker inside your process, for tests,
// examples and local experiments, the way net/http/httptest runs an HTTP
// server.
//
//	broker := mqtttest.StartT(t, mqtttest.Options{})  // stopped when the test ends
//	loop, _ := eventloop.New(eventloop.Options{Servers: []string{broker.URL()}})
//
// The broker is mochi-mqtt/server v2 on free loopback ports: MQTT 5 and
// 3.1.1 over TCP (URL), and on request TLS (Options.TLS, TLSURL),
// WebSocket (Options.WebSocket, WebSocketURL) and MQTT over QUIC
// (Options.QUIC, QUICURL). Every client is allowed.
//
// Beyond a plain mochi server it
//   - serves through listeners of its own, so Close stops every goroutine
//     the broker started and returns only when they are gone (mochi's own
//     Close does not wait for all of them, waits forever for connections
//     that never sent CONNECT, can deadlock when a client disconnects
//     during Close, and with its own listeners races a WaitGroup Add
//     against Wait);
//   - records every packet the broker reads from and writes to its clients
//     (Packets, WaitPacket, WaitMatch, Count), so a test can wait for
//     "PINGREQ from x" without sleeping; long-running users turn this off
//     with Options.DisableCapture;
//   - disconnects a client with a chosen MQTT 5 reason code
//     (DisconnectClient);
//   - advertises Maximum Packet Size and Topic Alias Maximum in CONNACK,
//     which mochi enforces but does not send.
package mqtttest
