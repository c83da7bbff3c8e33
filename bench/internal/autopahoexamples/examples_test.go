package autopahoexamples

import (
	"os"
	"testing"

	"github.com/mqttloop/mqttloop/bench/internal/brokers"
)

var broker string

func TestMain(m *testing.M) {
	b, err := brokers.StartMosquitto()
	if err != nil {
		panic(err)
	}
	broker = b.URL()
	code := m.Run()
	b.Stop()
	os.Exit(code)
}

func ExampleConcurrentPublishers() {
	ConcurrentPublishers(broker)
	// Output: acknowledged: 200
}

func ExampleRequest() {
	Request(broker)
	// Output: answer: 12:00
}

func ExampleBoundedJob() {
	BoundedJob(broker)
	// Output: acknowledged: 1000 of 1000
}
