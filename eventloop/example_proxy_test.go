package eventloop_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// Through a proxy: socks5:// (or socks5h:// to let the proxy resolve
// names) and http:// (HTTP CONNECT) proxies carry mqtt://, mqtts://, ws://
// and wss://, with credentials in the URL. Here an HTTP CONNECT proxy of a
// few lines stands in for your corporate proxy.
func ExampleOptions_proxy() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
	defer broker.Close()
	proxy := httptest.NewServer(http.HandlerFunc(connectProxy))
	defer proxy.Close()

	loop, _ := eventloop.New(eventloop.Options{
		Servers:  []string{broker.URL()},
		ClientID: "sensor-11",
		Proxy:    proxy.URL, // e.g. "http://user:password@proxy.example:3128", "socks5://proxy.example:1080"
	})
	requests := make(chan eventloop.Request, 1)
	requests <- eventloop.Disconnect{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ev, err := range loop.Run(ctx, requests).All() {
		if err != nil {
			break
		}
		if c, ok := ev.(eventloop.Connected); ok {
			fmt.Println("connected through the proxy over", c.Transport)
		}
	}
	// Output:
	// connected through the proxy over tcp
}

// connectProxy is a minimal HTTP CONNECT proxy.
func connectProxy(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	upstream, err := net.Dial("tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	client, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	rw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	rw.Flush()
	go func() { io.Copy(upstream, rw); upstream.Close() }()
	io.Copy(client, upstream)
	client.Close()
}
