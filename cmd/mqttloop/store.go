package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
)

// flushEvery is how often the broker's store writes its changes to the
// file: a broker killed (not stopped) loses at most this much.
const flushEvery = 100 * time.Millisecond

// fileStore is a mochi storage hook that keeps the broker's retained
// messages, sessions (clients, subscriptions, messages in flight) in one
// JSON file: loaded at start, rewritten (to a temporary file renamed over
// it) at most every flushEvery while something changed, and at Stop. It
// follows mochi's bolt hook record for record, without its dependency
// (and with the packet id of messages in flight, which that hook loses).
type fileStore struct {
	mqtt.HookBase
	path string

	mu    sync.Mutex
	kv    map[string]json.RawMessage
	dirty bool
	err   error // the last write error, logged once

	stop, done chan struct{}
	started    bool // the writer runs (Init succeeded)
}

func newFileStore(path string) *fileStore {
	return &fileStore{path: path, kv: map[string]json.RawMessage{}, stop: make(chan struct{}), done: make(chan struct{})}
}

func (h *fileStore) ID() string { return "mqttloop-file-store" }

func (h *fileStore) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnWillSent, mqtt.OnQosPublish, mqtt.OnQosComplete,
		mqtt.OnQosDropped, mqtt.OnClientExpired, mqtt.OnRetainedExpired,
		mqtt.StoredClients, mqtt.StoredInflightMessages, mqtt.StoredRetainedMessages, mqtt.StoredSubscriptions,
	}, []byte{b})
}

// load reads the file, if there is one.
func (h *fileStore) load() error {
	b, err := os.ReadFile(h.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("persistence file: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, &h.kv); err != nil {
		return fmt.Errorf("persistence file %s is damaged: %w", h.path, err)
	}
	return nil
}

// Init loads the file and starts the writer.
func (h *fileStore) Init(any) error {
	if err := h.load(); err != nil {
		return err
	}
	h.started = true
	go h.writer()
	return nil
}

func (h *fileStore) writer() {
	defer close(h.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.flush()
		case <-h.stop:
			h.flush()
			return
		}
	}
}

// Stop writes what changed and stops the writer.
func (h *fileStore) Stop() error {
	if !h.started {
		return nil
	}
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// flush writes the file if something changed.
func (h *fileStore) flush() {
	h.mu.Lock()
	if !h.dirty {
		h.mu.Unlock()
		return
	}
	b, err := json.Marshal(h.kv)
	h.dirty = false
	h.mu.Unlock()
	if err == nil {
		err = writeAtomic(h.path, b)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		if h.err == nil && h.Log != nil {
			h.Log.Error("writing the persistence file", "path", h.path, "error", err)
		}
		h.err = err
		h.dirty = true // try again
	}
}

// writeAtomic replaces path with b: a reader (or a crash) sees the old
// file or the new one.
func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (h *fileStore) set(k string, v interface{ MarshalBinary() ([]byte, error) }) {
	b, err := v.MarshalBinary()
	if err != nil {
		return
	}
	h.mu.Lock()
	h.kv[k] = b
	h.dirty = true
	h.mu.Unlock()
}

func (h *fileStore) del(k string) {
	h.mu.Lock()
	if _, ok := h.kv[k]; ok {
		delete(h.kv, k)
		h.dirty = true
	}
	h.mu.Unlock()
}

// each calls f with the values under prefix, in key order.
func (h *fileStore) each(prefix string, f func([]byte) error) error {
	h.mu.Lock()
	var keys []string
	for k := range h.kv {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		vals[i] = h.kv[k]
	}
	h.mu.Unlock()
	for _, v := range vals {
		if err := f(v); err != nil {
			return err
		}
	}
	return nil
}

func clientKey(id string) string { return storage.ClientKey + "_" + id }

func (h *fileStore) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) { h.updateClient(cl) }
func (h *fileStore) OnWillSent(cl *mqtt.Client, _ packets.Packet)           { h.updateClient(cl) }

func (h *fileStore) updateClient(cl *mqtt.Client) {
	props := cl.Properties.Props.Copy(false)
	h.set(clientKey(cl.ID), &storage.Client{
		ID: cl.ID, T: storage.ClientKey, Remote: cl.Net.Remote, Listener: cl.Net.Listener,
		Username: cl.Properties.Username, Clean: cl.Properties.Clean, ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval: props.SessionExpiryInterval, SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod: props.AuthenticationMethod,
			AuthenticationData:   props.AuthenticationData, RequestProblemInfo: props.RequestProblemInfo,
			RequestResponseInfo: props.RequestResponseInfo, ReceiveMaximum: props.ReceiveMaximum,
			TopicAliasMaximum: props.TopicAliasMaximum, User: props.User, MaximumPacketSize: props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	})
}

func (h *fileStore) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if !expire || cl.StopCause() == packets.ErrSessionTakenOver {
		return
	}
	h.del(clientKey(cl.ID))
}

func (h *fileStore) OnClientExpired(cl *mqtt.Client) { h.del(clientKey(cl.ID)) }

func subKey(client, filter string) string {
	return storage.SubscriptionKey + "_" + client + ":" + filter
}

func (h *fileStore) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= 0x80 {
			continue
		}
		h.set(subKey(cl.ID, f.Filter), &storage.Subscription{
			ID: subKey(cl.ID, f.Filter), T: storage.SubscriptionKey, Client: cl.ID, Qos: codes[i], Filter: f.Filter,
			Identifier: f.Identifier, NoLocal: f.NoLocal, RetainHandling: f.RetainHandling, RetainAsPublished: f.RetainAsPublished,
		})
	}
}

func (h *fileStore) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	for _, f := range pk.Filters {
		h.del(subKey(cl.ID, f.Filter))
	}
}

func messageOf(id, t string, cl *mqtt.Client, pk packets.Packet, sent int64) *storage.Message {
	props := pk.Properties.Copy(false)
	return &storage.Message{
		ID: id, T: t, Client: cl.ID, Origin: pk.Origin, FixedHeader: pk.FixedHeader, TopicName: pk.TopicName,
		Payload: pk.Payload, Sent: sent, Created: pk.Created,
		// mochi's bolt hook leaves the packet id out, so a restored message
		// in flight is never delivered: keep it.
		PacketID: pk.PacketID,
		Properties: storage.MessageProperties{
			PayloadFormat: props.PayloadFormat, PayloadFormatFlag: props.PayloadFormatFlag, MessageExpiryInterval: props.MessageExpiryInterval,
			ContentType: props.ContentType, ResponseTopic: props.ResponseTopic, CorrelationData: props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier, TopicAlias: props.TopicAlias, User: props.User,
		},
	}
}

func retainedKey(topic string) string { return storage.RetainedKey + "_" + topic }

func (h *fileStore) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if r == -1 {
		h.del(retainedKey(pk.TopicName))
		return
	}
	h.set(retainedKey(pk.TopicName), messageOf(retainedKey(pk.TopicName), storage.RetainedKey, cl, pk, 0))
}

func (h *fileStore) OnRetainedExpired(topic string) { h.del(retainedKey(topic)) }

func inflightKey(cl *mqtt.Client, pk packets.Packet) string {
	return storage.InflightKey + "_" + cl.ID + ":" + pk.FormatID()
}

func (h *fileStore) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	h.set(inflightKey(cl, pk), messageOf(inflightKey(cl, pk), storage.InflightKey, cl, pk, sent))
}

func (h *fileStore) OnQosComplete(cl *mqtt.Client, pk packets.Packet) { h.del(inflightKey(cl, pk)) }
func (h *fileStore) OnQosDropped(cl *mqtt.Client, pk packets.Packet)  { h.del(inflightKey(cl, pk)) }

func (h *fileStore) StoredClients() (v []storage.Client, err error) {
	err = h.each(storage.ClientKey+"_", func(b []byte) error {
		var c storage.Client
		if err := c.UnmarshalBinary(b); err != nil {
			return err
		}
		v = append(v, c)
		return nil
	})
	return v, err
}

func (h *fileStore) StoredSubscriptions() (v []storage.Subscription, err error) {
	err = h.each(storage.SubscriptionKey+"_", func(b []byte) error {
		var s storage.Subscription
		if err := s.UnmarshalBinary(b); err != nil {
			return err
		}
		v = append(v, s)
		return nil
	})
	return v, err
}

func (h *fileStore) storedMessages(prefix string) (v []storage.Message, err error) {
	err = h.each(prefix+"_", func(b []byte) error {
		var m storage.Message
		if err := m.UnmarshalBinary(b); err != nil {
			return err
		}
		v = append(v, m)
		return nil
	})
	return v, err
}

func (h *fileStore) StoredRetainedMessages() ([]storage.Message, error) {
	return h.storedMessages(storage.RetainedKey)
}

func (h *fileStore) StoredInflightMessages() ([]storage.Message, error) {
	return h.storedMessages(storage.InflightKey)
}
