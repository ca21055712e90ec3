package ginsse

import (
	"sync"
	"sync/atomic"
)

// A window is one channel's log of its most recent frames, held once per
// channel however many streams read it. Streams follow it with a cursor of
// their own, so fan-out costs one wake-up per stream and no copy; a stream
// that falls further behind than the window holds is closed (history off)
// or catches up from Redis (history on).
//
// With history on, the window is also the channel's replay window: it
// holds every history entry after base, in order, so a stream that resumes
// from a position inside it is served from memory.
//
// Frames are numbered in the order they were appended; the number of the
// next one is head. Readers take no lock: they load head, then the ring,
// and check that each slot still holds the frame they expect. Writers hold
// mu.
type window struct {
	mu   sync.Mutex
	ring atomic.Pointer[ring]
	head atomic.Uint64 // number of the next frame appended
	tail uint64        // number of the oldest frame held

	max   int           // most frames held
	floor int           // frames kept even when the hub is over its byte budget
	bytes int64         // bytes of the frames held
	hub   *windowBudget // bytes held by every window of the Sender

	// With history on:
	state   winState
	base    position // every entry after base is held; zero: the whole history
	newest  position // the newest entry held
	evicted bool     // frames were dropped, so none is put back before tail
	// released is set when the channel's last stream left: a read that
	// was still out when it did must not put frames back in.
	released bool
	parked   []*frame // live frames held back until the window is contiguous again
	gen      int      // subscription losses seen
	subGen   int      // gen when the subscription was last confirmed
	feeding  bool     // a feed job exists, queued or in a round, to make the window contiguous
}

// winState tells what a history window knows.
type winState int

const (
	winCold   winState = iota // nothing read yet
	winSeeded                 // the newest entries are held; live frames wait until the gap to the subscription is read
	winLive                   // contiguous with Redis: live frames go straight in
	winBroken                 // the subscription was lost: live frames wait until what it missed is read
)

// windowBudget bounds the bytes all of a Sender's windows hold together.
type windowBudget struct {
	held  atomic.Int64
	limit int64
}

type ring struct {
	slots []atomic.Pointer[frame]
	mask  uint64
}

// firstSeq numbers the first frame of a window, leaving room below it for
// entries read back from Redis.
const firstSeq = 1 << 40

// initialRing is the slots a new window starts with. Most per-user
// channels hold a few frames; a busy channel's ring doubles as it fills.
const initialRing = 4

func newRing(size int) *ring {
	n := 1
	for n < size {
		n <<= 1
	}
	return &ring{slots: make([]atomic.Pointer[frame], n), mask: uint64(n - 1)}
}

func (r *ring) slot(n uint64) *atomic.Pointer[frame] { return &r.slots[n&r.mask] }

func (w *window) init(max, floor int, hub *windowBudget, history bool) {
	w.max, w.floor, w.hub = max, min(floor, max), hub
	w.ring.Store(newRing(min(max, initialRing)))
	w.head.Store(firstSeq)
	w.tail = firstSeq
	if !history {
		w.state = winLive
	}
}

// at returns frame n, or nil when the window no longer holds it (or does
// not hold it yet: n >= head).
func (w *window) at(n uint64) *frame {
	if n >= w.head.Load() {
		return nil
	}
	r := w.ring.Load()
	for {
		if f := r.slot(n).Load(); f != nil && f.n == n {
			return f
		}
		// A ring that grew meanwhile holds it in its new place.
		if r2 := w.ring.Load(); r2 != r {
			r = r2
			continue
		}
		return nil
	}
}

// push appends f. The caller holds mu.
func (w *window) push(f *frame) {
	if w.released {
		return
	}
	n := w.head.Load()
	r := w.ring.Load()
	if int(n-w.tail) == len(r.slots) {
		if len(r.slots) < w.max {
			r = w.grow(r, len(r.slots)*2)
		} else {
			w.drop()
		}
	}
	f.n = n
	r.slot(n).Store(f)
	w.account(f, 1)
	w.head.Store(n + 1)
	if f.pos != (position{}) {
		w.newest = f.pos
	}
	for w.hub.over() && int(w.head.Load()-w.tail) > w.floor {
		w.drop()
	}
}

// grow moves the frames held to a ring of size slots.
func (w *window) grow(r *ring, size int) *ring {
	nr := newRing(size)
	for n := w.tail; n < w.head.Load(); n++ {
		nr.slot(n).Store(r.slot(n).Load())
	}
	w.ring.Store(nr)
	return nr
}

// drop forgets the oldest frame. The caller holds mu.
func (w *window) drop() {
	s := w.ring.Load().slot(w.tail)
	if f := s.Load(); f != nil {
		if f.pos != (position{}) {
			w.base = f.pos
		}
		w.account(f, -1)
	}
	s.Store(nil)
	w.tail++
	w.evicted = true
}

func (w *window) account(f *frame, sign int64) {
	b := sign * int64(len(f.b))
	w.bytes += b
	w.hub.held.Add(b)
}

func (b *windowBudget) over() bool { return b.limit > 0 && b.held.Load() > b.limit }

// release gives the window's bytes back to the budget when its channel is
// unsubscribed.
func (w *window) release() {
	w.mu.Lock()
	w.hub.held.Add(-w.bytes)
	w.bytes = 0
	w.released = true
	w.parked = nil
	w.mu.Unlock()
}

// offer takes a live frame from the subscription: into the window, or
// parked while a history window is not contiguous with Redis. It reports
// whether the frame went in.
func (w *window) offer(f *frame) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != winLive {
		w.parked = append(w.parked, f)
		return false
	}
	if f.pos != (position{}) && !w.newest.less(f.pos) {
		return false // already read back from Redis
	}
	w.push(f)
	return true
}
