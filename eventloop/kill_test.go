package eventloop_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/reconnect"
	"github.com/mqttloop/mqttloop/state/filestore"
)

// The child process of TestKilledProcessResumes: it is this test binary,
// run with these variables set.
const (
	envChild  = "MQTTLOOP_KILL_CHILD"
	envBroker = "MQTTLOOP_KILL_BROKER"
	envStore  = "MQTTLOOP_KILL_STORE"
	envTopic  = "MQTTLOOP_KILL_TOPIC"
	envCount  = "MQTTLOOP_KILL_COUNT" // 0: resume only, no new publishes
)

// TestKilledProcessResumes: a child process publishes N messages (QoS 1
// and 2) through a file store and is killed with SIGKILL mid-stream; a new
// child opens the same store and finishes. A subscriber receives every QoS
// 1 message at least once and every QoS 2 message exactly once.
func TestKilledProcessResumes(t *testing.T) {
	if os.Getenv(envChild) != "" {
		t.Skip("this is the child")
	}
	// mosquitto only: mochi v2.7.9 loses messages when a session resumes
	// (see onMosquitto).
	onMosquitto(t, func(t *testing.T, b brokerCase) {
		const n = 2000
		topic := uniqueID("killed")
		sub := startClient(t, b.url, eventloop.Options{})
		sub.subscribe(eventloop.Filter{Topic: topic, QoS: 2})
		store := filepath.Join(t.TempDir(), "session.db")
		clientID := uniqueID("killed")

		// First child: accepts all n publishes into its durable session,
		// says so, and publishes them slowly (throttled) until killed.
		child, lines := startChild(t, b.url, store, topic, clientID, n)
		waitLine(t, lines, "accepted-all")
		counts := map[int]int{}
		qos := map[int]byte{}
		receive := func() {
			m := expect[eventloop.Message](sub)
			i, err := strconv.Atoi(string(m.Payload))
			if err != nil {
				t.Fatalf("payload %q", m.Payload)
			}
			counts[i]++
			qos[i] = m.QoS
		}
		for len(counts) < n/10 {
			receive()
		}
		if err := child.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		child.Wait()
		killedAt := len(counts)

		// Second child: resumes from the store with no new work.
		resumed, lines := startChild(t, b.url, store, topic, clientID, 0)
		waitLine(t, lines, "done")
		if err := resumed.Wait(); err != nil {
			t.Fatalf("resumed child: %v", err)
		}
		for len(counts) < n {
			receive()
		}
		// A marker published after everything proves no duplicate is
		// still on its way.
		marker := startClient(t, b.url, eventloop.Options{})
		marker.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("-1")})
		for counts[-1] == 0 {
			receive()
		}
		dups := 0
		for i := 0; i < n; i++ {
			switch {
			case counts[i] == 0:
				t.Fatalf("message %d lost", i)
			case counts[i] > 1 && qos[i] == 2:
				t.Fatalf("QoS 2 message %d delivered %d times", i, counts[i])
			case counts[i] > 1:
				dups++
			}
		}
		t.Logf("%s: killed after %d of %d messages arrived; all %d arrived, %d QoS 1 duplicates", b.name, killedAt, n, n, dups)
	})
}

func startChild(t *testing.T, broker, store, topic, clientID string, n int) (*exec.Cmd, <-chan string) {
	t.Helper()
	return startTestChild(t, "TestKillChild", false,
		envChild+"="+clientID, envBroker+"="+broker, envStore+"="+store,
		envTopic+"="+topic, envCount+"="+strconv.Itoa(n))
}

// startTestChild runs the test binary's test named test in a child
// process with env added, and returns its output line by line. With
// dropUnread, lines nobody reads (beyond a buffer of 64) are dropped
// rather than holding the child's output back. The child is killed when
// the test ends.
func startTestChild(t *testing.T, test string, dropUnread bool, env ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if os.Getenv("KILL_DEBUG") != "" {
				fmt.Println("child:", sc.Text())
			}
			if !dropUnread {
				lines <- sc.Text()
				continue
			}
			select {
			case lines <- sc.Text():
			default: // nobody listens to this child any more
			}
		}
		io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, lines
}

func waitLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	var seen []string
	timeout := time.After(testTimeout)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("child ended before %q; it said:\n%s", want, strings.Join(seen, "\n"))
			}
			if l == want {
				return
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("child did not say %q; it said:\n%s", want, strings.Join(seen, "\n"))
		}
	}
}

// TestKillChild is the child's body; it does nothing in a normal run.
func TestKillChild(t *testing.T) {
	clientID := os.Getenv(envChild)
	if clientID == "" {
		t.Skip("only runs as the child of TestKilledProcessResumes")
	}
	n, _ := strconv.Atoi(os.Getenv(envCount))
	if err := runChild(clientID, os.Getenv(envBroker), os.Getenv(envStore), os.Getenv(envTopic), n); err != nil {
		fmt.Println("child error:", err)
		os.Exit(1)
	}
	fmt.Println("done")
	os.Exit(0)
}

func runChild(clientID, broker, storePath, topic string, n int) error {
	store, err := filestore.Open(storePath, filestore.Options{})
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
		MaxQueued:     n + 1,
		MaxInflight:   10,
		Store:         store,
	})
	if err != nil {
		return err
	}
	requests := make(chan eventloop.Request, n+1)
	if n > 0 {
		// Slow enough that the parent kills it mid-stream.
		requests <- eventloop.Throttle{PerSecond: 2000, Burst: 10}
		for i := 0; i < n; i++ {
			requests <- eventloop.Publish{Topic: topic, QoS: byte(1 + i%2), Payload: []byte(strconv.Itoa(i))}
		}
	}
	close(requests)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	announced := false
	events := loop.Run(ctx, requests)
	for {
		_, err := events.Next()
		if !announced && len(requests) == 0 {
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
