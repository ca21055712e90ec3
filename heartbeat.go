package ginsse

import (
	"sync/atomic"
	"time"
)

// tick drives the shared heartbeat clock until Close.
func (s *Sender) tick(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			s.beat.fire()
		}
	}
}

// clock is one heartbeat shared by all streams: each tick closes the
// channel streams wait on, so no stream needs a timer of its own.
type clock struct {
	ch atomic.Pointer[chan struct{}]
}

func newClock() *clock {
	c := &clock{}
	ch := make(chan struct{})
	c.ch.Store(&ch)
	return c
}

// wait returns a channel closed at the next tick; nil (never ready) for a
// nil clock.
func (c *clock) wait() <-chan struct{} {
	if c == nil {
		return nil
	}
	return *c.ch.Load()
}

func (c *clock) fire() {
	next := make(chan struct{})
	close(*c.ch.Swap(&next))
}
