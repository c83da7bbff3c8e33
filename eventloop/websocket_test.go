package eventloop_test

import (
	"net/http"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// TestWebSocketHeader checks that Options.WebSocketHeader and the URL's
// path reach the server with the upgrade request.
func TestWebSocketHeader(t *testing.T) {
	mb := mqtttest.StartT(t, mqtttest.Options{WebSocket: true})
	url := mb.WebSocketURL()
	url = url[:len(url)-len("/mqtt")] + "/custom/path"
	c := startClient(t, url, eventloop.Options{
		WebSocketHeader: http.Header{"Authorization": {"Bearer s3cret"}, "X-Client": {"mqttloop"}},
	})
	topic := uniqueID("ws-header")
	c.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
	ups := mb.WebSocketUpgrades()
	if len(ups) != 1 {
		t.Fatalf("%d upgrade requests, want 1", len(ups))
	}
	u := ups[0]
	if u.Path != "/custom/path" || u.Header.Get("Authorization") != "Bearer s3cret" || u.Header.Get("X-Client") != "mqttloop" || u.Header.Get("Sec-Websocket-Protocol") != "mqtt" {
		t.Fatalf("upgrade request %+v", u)
	}
}
