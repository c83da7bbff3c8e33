package clients

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttloop/mqttloop/client"
	"github.com/mqttloop/mqttloop/eventloop"
)

// Awaited publishes n messages of payload on topic at qos from goroutines
// goroutines, each calling the client's blocking publish and waiting for
// its outcome before the next (the way an application with concurrent
// producers that need each outcome uses a client): mqttloop's
// client.Publish, autopaho's ConnectionManager.Publish, paho.mqtt.golang's
// Publish followed by token.Wait.
func Awaited(kind Kind, url, id, topic string, payload []byte, qos byte, n, goroutines int) error {
	goroutines = max(goroutines, 1)
	var publish func(ctx context.Context) error
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	switch kind {
	case Loop:
		c, err := client.New(client.Options{Loop: eventloop.Options{Servers: []string{url}, ClientID: id, CleanStart: true, KeepAlive: KeepAlive, MaxInflight: 65535}, QueueSize: goroutines})
		if err != nil {
			return err
		}
		ran := make(chan error, 1)
		go func() { ran <- c.Run(ctx) }()
		defer func() { cancel(); <-ran }()
		publish = func(ctx context.Context) error {
			_, err := c.Publish(ctx, topic, payload, client.PublishOptions{QoS: qos})
			return err
		}
	case AutoPaho:
		cm, err := autoConnect(ctx, url, id, nil)
		if err != nil {
			return err
		}
		defer autoSub{cm, cancel}.Close()
		publish = func(ctx context.Context) error {
			_, err := cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
			return err
		}
	case Paho:
		c, err := pahoConnect(url, id)
		if err != nil {
			return err
		}
		defer c.Disconnect(100)
		publish = func(context.Context) error {
			t := c.Publish(topic, qos, false, payload)
			t.Wait()
			return t.Error()
		}
	default:
		return fmt.Errorf("awaited: client %q has no blocking publish (use %s, %s or %s)", kind, Loop, AutoPaho, Paho)
	}
	var wg sync.WaitGroup
	errs := make([]error, goroutines)
	per, extra := n/goroutines, n%goroutines
	for g := range goroutines {
		k := per
		if g < extra {
			k++
		}
		wg.Go(func() {
			for range k {
				if err := publish(ctx); err != nil {
					errs[g] = err
					return
				}
			}
		})
	}
	wg.Wait()
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s: %s", kind, strings.Join(msgs, "; "))
	}
	return nil
}
