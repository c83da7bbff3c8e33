// Package autopahoexamples holds the five programs of issue 11 written
// with paho.golang's autopaho, as a user of it would, to compare their
// length with the Examples of mqttloop's client package (the journal
// counts both). Each function is one program; url is the broker.
package autopahoexamples

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/autopaho/extensions/rpc"
	"github.com/eclipse/paho.golang/paho"
)

// ConcurrentPublishers: 8 goroutines × 25 awaited QoS 1 publishes.
func ConcurrentPublishers(server string) {
	u, _ := url.Parse(server)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30,
		ClientConfig: paho.ClientConfig{ClientID: "publishers"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		fmt.Println(err)
		return
	}
	var acked atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				_, err := cm.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("orders/%d", w), QoS: 1, Payload: fmt.Appendf(nil, "order %d", i)})
				if err != nil {
					fmt.Println("not published:", err)
					return
				}
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Println("acknowledged:", acked.Load())
}

// Router: a handler per filter, acknowledged after the handlers ran.
func Router(server string) {
	u, _ := url.Parse(server)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var created, all atomic.Int64
	done := make(chan struct{})
	router := paho.NewStandardRouter()
	router.RegisterHandler("orders/+/created", func(p *paho.Publish) { created.Add(1) })
	router.RegisterHandler("orders/#", func(p *paho.Publish) {
		if all.Add(1) == 300 {
			close(done)
		}
	})
	subscribed := make(chan struct{})
	var once sync.Once
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
				{Topic: "orders/+/created", QoS: 1}, {Topic: "orders/#", QoS: 1},
			}}); err != nil {
				fmt.Println(err)
				return
			}
			once.Do(func() { close(subscribed) })
		},
		ClientConfig: paho.ClientConfig{ClientID: "orders-service", EnableManualAcknowledgment: true, OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			// mosquitto sends a message matching both filters twice (one
			// copy per subscription) and the router gives each copy to
			// both handlers: 400 and 200 where 300 and 100 were meant.
			// Telling copies apart needs subscription identifiers, by hand.
			router.Route(pr.Packet.Packet()) // the handlers cannot refuse: errors are theirs to handle
			return true, pr.Client.Ack(pr.Packet)
		}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	<-subscribed
	pub, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30,
		ClientConfig: paho.ClientConfig{ClientID: "orders-source"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := pub.AwaitConnection(ctx); err != nil {
		fmt.Println(err)
		return
	}
	for i := range 300 {
		kind := []string{"created", "paid", "shipped"}[i%3]
		pub.Publish(ctx, &paho.Publish{Topic: "orders/eu/" + kind, QoS: 1})
	}
	<-done
	fmt.Println("orders/#:", all.Load(), "orders/+/created:", created.Load())
	_ = cm
}

// Request: MQTT 5 request/response with a deadline (autopaho's rpc
// extension).
func Request(server string) {
	u, _ := url.Parse(server)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The service.
	svcUp := make(chan struct{})
	var svcOnce sync.Once
	_, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "svc/time", QoS: 1}}}); err != nil {
				fmt.Println(err)
				return
			}
			svcOnce.Do(func() { close(svcUp) })
		},
		ClientConfig: paho.ClientConfig{ClientID: "time-service", OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			if p.Properties == nil || p.Properties.ResponseTopic == "" {
				return true, nil
			}
			// QoS 0: a QoS 1 publish awaited inside this callback waits
			// for a PUBACK that this same goroutine would have to read.
			_, err := pr.Client.Publish(ctx, &paho.Publish{Topic: p.Properties.ResponseTopic, QoS: 0, Payload: []byte("12:00"),
				Properties: &paho.PublishProperties{CorrelationData: p.Properties.CorrelationData}})
			return true, err
		}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	<-svcUp
	// The caller.
	router := paho.NewStandardRouter()
	callerUp := make(chan struct{})
	var callerOnce sync.Once
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "caller/responses", QoS: 1}}}); err != nil {
				fmt.Println(err)
				return
			}
			callerOnce.Do(func() { close(callerUp) })
		},
		ClientConfig: paho.ClientConfig{ClientID: "caller", OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			router.Route(pr.Packet.Packet())
			return true, nil
		}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	<-callerUp
	h, err := rpc.NewHandler(ctx, rpc.HandlerOpts{Conn: cm, Router: router, ResponseTopicFmt: "%s/responses", ClientID: "caller"})
	if err != nil {
		fmt.Println(err)
		return
	}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	resp, err := h.Request(rctx, &paho.Publish{Topic: "svc/time", QoS: 1, Payload: []byte("now?")})
	if errors.Is(err, context.DeadlineExceeded) {
		fmt.Println("no answer in time")
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("answer: %s\n", resp.Payload)
}

// Sensor: a reading every 100 ms (5 here), through broker restarts
// (autopaho reconnects by default) and its own restarts (autopaho's
// session state must be made persistent by the user: a file-backed
// session.SessionManager and queue are not part of the library, so the
// readings and the session are in memory only here).
func Sensor(server string) {
	u, _ := url.Parse(server)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30,
		CleanStartOnInitialConnection: false, SessionExpiryInterval: 3600,
		ClientConfig: paho.ClientConfig{ClientID: "sensor-7"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		fmt.Println(err)
		return
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := range 5 {
		<-tick.C
		if _, err := cm.Publish(ctx, &paho.Publish{Topic: "sensors/7/temp", QoS: 1, Payload: fmt.Appendf(nil, "%.1f", 20+float64(i)/10)}); err != nil {
			fmt.Println("reading lost:", err)
		}
	}
	fmt.Println("5 readings acknowledged")
	<-cm.Done()
}

// BoundedJob: publish 1,000 and exit when all are acknowledged, or after
// 10 seconds.
func BoundedJob(server string) {
	u, _ := url.Parse(server)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30,
		ClientConfig: paho.ClientConfig{ClientID: "export-job"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		fmt.Println(err)
		return
	}
	var acked atomic.Int64
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			for i := w; i < 1000; i += 10 {
				if _, err := cm.Publish(ctx, &paho.Publish{Topic: "export/rows", QoS: 1, Payload: fmt.Appendf(nil, "row %d", i)}); err != nil {
					return
				}
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Println("acknowledged:", acked.Load(), "of 1000")
}
