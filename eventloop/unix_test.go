package eventloop_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
)

// TestUnixSocket runs a publish/subscribe round trip over mosquitto's
// unix-socket listener.
func TestUnixSocket(t *testing.T) {
	requireMosquitto(t)
	// mosquitto started as root drops to its own user, which cannot enter
	// t.TempDir() (mode 0700): give the socket a directory it can use.
	dir, err := os.MkdirTemp("", "mqttloop-unix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "mqtt.sock")
	mosquitto.Start(t, mosquitto.Options{Extra: []string{"listener 0 " + sock}})
	// The harness waits for the TCP listener; mosquitto opens the unix one
	// just after it. Readiness check, not synchronization by sleeping:
	if !leakcheck.Poll(testTimeout, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("mosquitto's unix listener at %s never accepted", sock)
	}
	c := startClient(t, "unix://"+sock, eventloop.Options{})
	topic := uniqueID("unix")
	c.subscribe(eventloop.Filter{Topic: topic, QoS: 2})
	c.send(eventloop.Publish{Topic: topic, QoS: 2, Payload: []byte("over a unix socket")})
	m := expect[eventloop.Message](c)
	if string(m.Payload) != "over a unix socket" {
		t.Fatalf("got %q", m.Payload)
	}
}
