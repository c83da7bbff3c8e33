package state

func (s *MqttState) allocID() (uint16, error) {
	if len(s.inUse)+len(s.incomingQoS2)+len(s.unackedQoS1) >= 65535 {
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
		if _, theirs := s.incomingQoS2[s.nextID]; theirs {
			continue
		}
		if _, theirs := s.unackedQoS1[s.nextID]; theirs {
			continue
		}
		s.touchMeta()
		s.inUse[s.nextID] = struct{}{}
		return s.nextID, nil
	}
}

func (s *MqttState) freeID(id uint16) { delete(s.inUse, id) }
