package state

// allocID returns a free packet id for an outgoing request.
//
// The two directions have separate id spaces in MQTT, but some brokers
// (mochi v2.7.9) keep one in-flight table per client: the loop prefers
// ids the broker is not using towards it, so they never collide. When
// every id free on the client's side is in use by the broker (a broker
// holding thousands of QoS 2 messages unreleased), it takes one anyway:
// outgoing publishes never starve because of incoming ones.
func (s *MqttState) allocID() (uint16, error) {
	if len(s.inUse) >= 65535 {
		return 0, ErrNoPacketID
	}
	for tries := 0; tries < 65535; tries++ {
		id := s.advanceID()
		if _, used := s.inUse[id]; used {
			continue
		}
		if s.incomingQoS2.Has(id) || s.unackedQoS1.Has(id) {
			continue
		}
		s.inUse[id] = struct{}{}
		return id, nil
	}
	for {
		id := s.advanceID()
		if _, used := s.inUse[id]; !used {
			s.inUse[id] = struct{}{}
			return id, nil
		}
	}
}

// advanceID moves nextID to the next id, skipping 0.
func (s *MqttState) advanceID() uint16 {
	s.nextID++
	if s.nextID == 0 {
		s.nextID = 1
	}
	return s.nextID
}

func (s *MqttState) freeID(id uint16) { delete(s.inUse, id) }

// IncomingHeld returns how many QoS 1 and 2 messages from the broker the
// client has not finished: QoS 1 awaiting the user's Ack, QoS 2 awaiting
// the user's Ack or the broker's PUBREL. MQTT 5 caps it at the client's
// Receive Maximum.
func (s *MqttState) IncomingHeld() int { return s.unackedQoS1.Len() + s.incomingQoS2.Len() }
