package mqtttest

import "testing"

// StartT starts a broker for a test: it fails the test if the broker cannot
// start and closes the broker with t.Cleanup, failing the test if Close
// reports an error.
func StartT(t testing.TB, opts Options) *Broker {
	t.Helper()
	b, err := Start(opts)
	if err != nil {
		t.Fatalf("mqtttest: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("mqtttest: close: %v", err)
		}
	})
	return b
}
