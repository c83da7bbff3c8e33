// Command demo shows mqttloop at work: it connects, subscribes, publishes at
// QoS 0, 1 and 2, prints what arrives and exits when every message came
// back. It speaks every transport of the library.
//
// Without -broker it starts an embedded broker on loopback with the
// listener chosen by -transport (tcp, tls, ws or quic); the TLS ones use
// certificates generated at start-up, and the client trusts their CA:
//
//	go run ./cmd/demo                          # MQTT over TCP, embedded broker
//	go run ./cmd/demo -transport tls           # mqtts:// (TLS), embedded broker
//	go run ./cmd/demo -transport ws            # ws:// (WebSocket), embedded broker
//	go run ./cmd/demo -transport quic -0rtt    # quic://, then a reconnection in 0-RTT
//	go run ./cmd/demo -protocol 4              # MQTT 3.1.1 instead of MQTT 5
//	go run ./cmd/demo -v                       # with a debug log of every packet
//
// With -broker it connects to the given servers, tried in turn (a server
// that cannot be reached is followed by the next one):
//
//	go run ./cmd/demo -broker mqtt://broker.example:1883
//	go run ./cmd/demo -broker mqtts://broker.example:8883 -cafile ca.pem
//	go run ./cmd/demo -broker mqtts://10.0.0.5:8883 -cafile ca.pem -servername broker.example
//	go run ./cmd/demo -broker mqtts://broker.example -cafile ca.pem -cert client.pem -key client-key.pem
//	go run ./cmd/demo -broker ws://broker.example:8080/mqtt -header 'Authorization: Bearer TOKEN'
//	go run ./cmd/demo -broker wss://broker.example/mqtt -user alice -password secret
//	go run ./cmd/demo -broker quic://broker.example:14567 -0rtt
//	go run ./cmd/demo -broker quic://broker.example,mqtts://broker.example   # QUIC, else TLS over TCP
//	go run ./cmd/demo -broker unix:///run/mosquitto/mqtt.sock
//	SSLKEYLOGFILE=keys.log go run ./cmd/demo -broker mqtts://broker.example -keylog   # for Wireshark
//
// Schemes: mqtt:// (tcp://), mqtts:// (ssl://, tls://), ws://, wss://,
// quic:// and unix://. The TLS flags (-cafile, -cert, -key, -servername,
// -insecure, -keylog) apply to mqtts://, wss:// and quic://. Without
// -cafile the server is verified against the system roots (with the
// embedded broker: against the generated test CA, plus -cafile if given).
package main
