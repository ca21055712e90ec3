package ginsse

import "time"

// tick sends every open stream its heartbeat until Close. The streams
// take it through their wake channel, so no stream needs a timer, or a
// channel to wait on, of its own.
func (s *Sender) tick(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var woken []*stream
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			woken = s.reach.raise(sigBeat, woken)
		}
	}
}
