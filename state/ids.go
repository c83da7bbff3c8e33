package state

func (s *MqttState) allocID() (uint16, error) {
	if len(s.inUse)+s.incomingQoS2.Len()+s.unackedQoS1.Len() >= 65535 {
		return 0, ErrNoPacketID
	}
	for {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if _, used := s.inUse[s.nextID]; used {
			continue
		}
		// The two directions have separate id spaces, but some brokers
		// (mochi v2.7.9) keep one in-flight table per client: avoid the
		// ids the broker is using towards us, so they never collide.
		if s.incomingQoS2.Has(s.nextID) || s.unackedQoS1.Has(s.nextID) {
			continue
		}
		s.inUse[s.nextID] = struct{}{}
		return s.nextID, nil
	}
}

func (s *MqttState) freeID(id uint16) { delete(s.inUse, id) }
