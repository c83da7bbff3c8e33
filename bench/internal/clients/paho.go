package clients

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// ---- eclipse/paho.mqtt.golang (MQTT 3.1.1), default options apart from
// the keepalive, clean session and no automatic reconnect.

func pahoConnect(url, id string) (mqtt.Client, error) {
	opts := mqtt.NewClientOptions().
		AddBroker("tcp://" + strings.TrimPrefix(url, "mqtt://")).
		SetClientID(id).
		SetCleanSession(true).
		SetKeepAlive(KeepAlive).
		SetAutoReconnect(false).
		SetConnectRetry(false)
	c := mqtt.NewClient(opts)
	t := c.Connect()
	if !t.WaitTimeout(30 * time.Second) {
		return nil, fmt.Errorf("paho: connect timed out")
	}
	if err := t.Error(); err != nil {
		return nil, fmt.Errorf("paho: %w", err)
	}
	return c, nil
}

type pahoSub struct{ c mqtt.Client }

func (s pahoSub) Close() { s.c.Disconnect(100) }

func pahoSubscribe(url, id, topic string, qos byte, onMsg func()) (Subscriber, error) {
	c, err := pahoConnect(url, id)
	if err != nil {
		return nil, err
	}
	t := c.Subscribe(topic, qos, func(mqtt.Client, mqtt.Message) { onMsg() })
	if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("paho: subscribe: %v", t.Error())
	}
	return pahoSub{c}, nil
}

func pahoPublish(url, id, topic string, payload []byte, qos byte, n, inflight int) error {
	c, err := pahoConnect(url, id)
	if err != nil {
		return err
	}
	defer c.Disconnect(100)
	if inflight < 1 {
		inflight = 1
	}
	ring := make([]mqtt.Token, inflight)
	for i := range n {
		if t := ring[i%inflight]; t != nil {
			t.Wait()
			if err := t.Error(); err != nil {
				return err
			}
		}
		ring[i%inflight] = c.Publish(topic, qos, false, payload)
	}
	for _, t := range ring {
		if t != nil {
			t.Wait()
			if err := t.Error(); err != nil {
				return err
			}
		}
	}
	return nil
}

func pahoRoundTrips(url, id, topic string, payload []byte, n int) ([]time.Duration, error) {
	c, err := pahoConnect(url, id)
	if err != nil {
		return nil, err
	}
	defer c.Disconnect(100)
	rtts := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		t := c.Publish(topic, 1, false, payload)
		t.Wait()
		if err := t.Error(); err != nil {
			return nil, err
		}
		rtts = append(rtts, time.Since(t0))
	}
	return rtts, nil
}

// ---- eclipse/paho.golang autopaho (MQTT 5), default options apart from
// the keepalive and clean start.

func autoConnect(ctx context.Context, rawURL, id string, onPub func(paho.PublishReceived) (bool, error)) (*autopaho.ConnectionManager, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     uint16(KeepAlive / time.Second),
		CleanStartOnInitialConnection: true,
		ConnectRetryDelay:             time.Second,
		ConnectTimeout:                30 * time.Second,
		ClientConfig:                  paho.ClientConfig{ClientID: id, PacketTimeout: 60 * time.Second},
	}
	if onPub != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){onPub}
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("autopaho: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cm.AwaitConnection(actx); err != nil {
		return nil, fmt.Errorf("autopaho: %w", err)
	}
	return cm, nil
}

type autoSub struct {
	cm     *autopaho.ConnectionManager
	cancel context.CancelFunc
}

func (s autoSub) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.cm.Disconnect(ctx)
	s.cancel()
	<-s.cm.Done()
}

func autoSubscribe(url, id, topic string, qos byte, onMsg func()) (Subscriber, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autoConnect(ctx, url, id, func(paho.PublishReceived) (bool, error) {
		onMsg()
		return true, nil
	})
	if err != nil {
		cancel()
		return nil, err
	}
	if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: qos}}}); err != nil {
		cancel()
		return nil, fmt.Errorf("autopaho: subscribe: %w", err)
	}
	return autoSub{cm, cancel}, nil
}

// autoPublish keeps inflight publishes going with as many goroutines, each
// calling the blocking Publish (autopaho's way to have several in flight).
func autoPublish(url, id, topic string, payload []byte, qos byte, n, inflight int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cm, err := autoConnect(ctx, url, id, nil)
	if err != nil {
		return err
	}
	defer autoSub{cm, cancel}.Close()
	workers := 1
	if qos > 0 {
		workers = max(inflight, 1)
	}
	errs := make(chan error, workers)
	per, extra := n/workers, n%workers
	for w := range workers {
		k := per
		if w < extra {
			k++
		}
		go func() {
			for range k {
				if _, err := cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func autoRoundTrips(url, id, topic string, payload []byte, n int) ([]time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cm, err := autoConnect(ctx, url, id, nil)
	if err != nil {
		return nil, err
	}
	defer autoSub{cm, cancel}.Close()
	rtts := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload}); err != nil {
			return nil, err
		}
		rtts = append(rtts, time.Since(t0))
	}
	return rtts, nil
}
