package eventloop_test

import (
	"fmt"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// TestNotifyQoS0: with Options.NotifyQoS0 a QoS 0 publish ends in a
// Published (reason code 0, the request and its Tag) once written; without
// it, none: the first Published is then the QoS 1 publish sent after it.
func TestNotifyQoS0(t *testing.T) {
	for _, notify := range []bool{true, false} {
		t.Run(fmt.Sprint(notify), func(t *testing.T) { notifyQoS0(t, notify) })
	}
}

func notifyQoS0(t *testing.T, notify bool) {
	leakcheck.VerifyNone(t)
	b := mqtttest.StartT(t, mqtttest.Options{})
	id := uniqueID("notifyqos0")
	c := startClient(t, b.URL(), eventloop.Options{ClientID: id, NotifyQoS0: notify})
	c.send(eventloop.Publish{Topic: "q0", Payload: []byte("a"), Tag: "zero"})
	c.send(eventloop.Publish{Topic: "q1", Payload: []byte("b"), QoS: 1, Tag: "one"})
	first := expect[eventloop.Published](c)
	if notify {
		if first.Request.Tag != "zero" || first.Request.QoS != 0 || first.ReasonCode != 0 || first.Err != nil {
			t.Fatalf("NotifyQoS0: first Published = %+v, want the QoS 0 publish", first)
		}
		if _, err := b.WaitPacket(testContext(t), id, mqtttest.FromClient, 3); err != nil {
			t.Fatalf("the QoS 0 publish did not reach the broker: %v", err)
		}
		first = expect[eventloop.Published](c)
	}
	if first.Request.Tag != "one" {
		t.Fatalf("NotifyQoS0 %v: Published = %+v, want the QoS 1 publish", notify, first)
	}
}
