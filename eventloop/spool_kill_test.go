package eventloop_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/faultproxy"
	"github.com/mqttloop/mqttloop/reconnect"
	"github.com/mqttloop/mqttloop/state/filestore"
)

// The child of TestSpoolKilledProcess (this test binary, run with these
// variables set).
const (
	envSpoolChild    = "MQTTLOOP_SPOOL_CHILD" // the client id
	envSpoolThrottle = "MQTTLOOP_SPOOL_THROTTLE"
)

// TestSpoolKilledProcess: a child process whose broker is unreachable
// takes N publishes into its offline spool (far beyond MaxQueued) and is
// killed with SIGKILL; the broker comes back; a second child resumes from
// the store, drains part of the backlog slowly and is killed too; a third
// finishes. Every message arrives, each the first time in order (a QoS 1
// duplicate may follow a kill).
func TestSpoolKilledProcess(t *testing.T) {
	if os.Getenv(envSpoolChild) != "" {
		t.Skip("this is the child")
	}
	onMosquitto(t, func(t *testing.T, b brokerCase) {
		const n = 5000
		topic := uniqueID("spoolkill")
		sub := startClient(t, b.url, eventloop.Options{})
		sub.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
		proxy := faultproxy.StartT(t, hostPort(b.url))
		proxy.Refuse(true)
		store := filepath.Join(t.TempDir(), "spool.db")
		clientID := uniqueID("spoolkill")
		// First child: offline, spools all n, killed.
		first, lines := startSpoolChild(t, proxy.URL(), store, topic, clientID, n, 0)
		waitLine(t, lines, "accepted-all")
		if err := first.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		first.Wait()
		if proxy.Stats().Active != 0 {
			t.Fatalf("the first child got through while the proxy refused")
		}

		proxy.Refuse(false)
		seen := map[int]int{}
		last := -1
		receive := func() {
			m := expect[eventloop.Message](sub)
			i, err := strconv.Atoi(string(m.Payload))
			if err != nil {
				t.Fatalf("payload %q", m.Payload)
			}
			if seen[i] == 0 {
				if i <= last {
					t.Fatalf("message %d arrived for the first time after %d: out of order", i, last)
				}
				last = i
			}
			seen[i]++
		}
		// Second child: resumes the spool, sends slowly, killed mid-way.
		second, _ := startSpoolChild(t, proxy.URL(), store, topic, clientID, 0, 2000)
		for len(seen) < n/3 {
			receive()
		}
		if err := second.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		second.Wait()
		killedAt := len(seen)

		// Third child: finishes.
		third, lines := startSpoolChild(t, proxy.URL(), store, topic, clientID, 0, 0)
		waitLine(t, lines, "done")
		if err := third.Wait(); err != nil {
			t.Fatalf("third child: %v", err)
		}
		for len(seen) < n {
			receive()
		}
		// A marker after everything: no duplicate is still on its way.
		marker := startClient(t, b.url, eventloop.Options{})
		marker.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("-1")})
		for seen[-1] == 0 {
			m := expect[eventloop.Message](sub)
			if string(m.Payload) == "-1" {
				seen[-1]++
				continue
			}
			i, _ := strconv.Atoi(string(m.Payload))
			seen[i]++
		}
		dups := 0
		for i := range n {
			switch {
			case seen[i] == 0:
				t.Fatalf("message %d lost", i)
			case seen[i] > 1:
				dups++
			}
		}
		t.Logf("all %d arrived; second child killed after %d; %d QoS 1 duplicates", n, killedAt, dups)
	})
}

func startSpoolChild(t *testing.T, broker, store, topic, clientID string, n, throttle int) (*exec.Cmd, <-chan string) {
	t.Helper()
	return startTestChild(t, "TestSpoolKillChild", true,
		envSpoolChild+"="+clientID, envSpoolThrottle+"="+strconv.Itoa(throttle),
		envBroker+"="+broker, envStore+"="+store, envTopic+"="+topic, envCount+"="+strconv.Itoa(n))
}

// TestSpoolKillChild is the child's body; it does nothing in a normal run.
func TestSpoolKillChild(t *testing.T) {
	clientID := os.Getenv(envSpoolChild)
	if clientID == "" {
		t.Skip("only runs as the child of TestSpoolKilledProcess")
	}
	n, _ := strconv.Atoi(os.Getenv(envCount))
	throttle, _ := strconv.Atoi(os.Getenv(envSpoolThrottle))
	if err := runSpoolChild(clientID, os.Getenv(envBroker), os.Getenv(envStore), os.Getenv(envTopic), n, throttle); err != nil {
		fmt.Println("child error:", err)
		os.Exit(1)
	}
	fmt.Println("done")
	os.Exit(0)
}

func runSpoolChild(clientID, broker, storePath, topic string, n, throttle int) error {
	store, err := filestore.Open(storePath, filestore.Options{Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer store.Close()
	loop, err := eventloop.New(eventloop.Options{
		Servers:       []string{broker},
		ClientID:      clientID,
		SessionExpiry: time.Hour,
		Reconnect:     reconnect.Automatic,
		BackOff:       &backoff.ConstantBackOff{Interval: 20 * time.Millisecond},
		MaxQueued:     16,
		MaxInflight:   10,
		Store:         store,
		SpoolBytes:    64 << 20,
	})
	if err != nil {
		return err
	}
	requests := make(chan eventloop.Request, 64)
	var fed atomic.Bool
	go func() {
		if throttle > 0 {
			requests <- eventloop.Throttle{PerSecond: float64(throttle), Burst: 10}
		}
		for i := range n {
			requests <- eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte(strconv.Itoa(i))}
		}
		fed.Store(true)
		close(requests)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	announced := false
	events := loop.Run(ctx, requests)
	for {
		_, err := events.Next()
		if !announced && fed.Load() && len(requests) == 0 {
			// Everything was taken from the channel, and Next returns
			// only after the iteration's Commit: all n are durable.
			fmt.Println("accepted-all")
			announced = true
		}
		if err != nil {
			if errors.Is(err, eventloop.ErrRequestsDone) {
				return nil
			}
			return err
		}
	}
}
