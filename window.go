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
	parked  []*frame // live frames held back until the window is contiguous again
	gen     int      // subscription losses seen
	subGen  int      // gen when the subscription was last confirmed
	feeding bool     // a goroutine is reading Redis to make the window contiguous
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
	w.ring.Store(newRing(min(max, 16)))
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

// seed fills a cold window with the newest entries of the history, oldest
// first; whole tells that they are all the history holds.
func (w *window) seed(entries []*frame, whole bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range entries {
		w.push(f)
	}
	if !whole && len(entries) > 0 {
		w.base = entries[0].pos
	}
	w.state = winSeeded
}

// catchUp appends the entries read after the window's newest, then the
// live frames parked meanwhile, and goes live — unless the subscription
// was lost again after gen, when what was read may already have a hole
// after it.
func (w *window) catchUp(entries []*frame, gen int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gen != gen {
		return false
	}
	for _, f := range entries {
		if w.newest.less(f.pos) {
			w.push(f)
		}
	}
	for _, f := range w.parked {
		if f.pos == (position{}) || w.newest.less(f.pos) {
			w.push(f)
		}
	}
	w.parked = nil
	w.state = winLive
	return true
}

// confirmed records a confirmed subscription and reports whether the
// caller must start the goroutine that reads what the live feed missed.
func (w *window) confirmed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.subGen = w.gen
	if w.feeding || (w.state != winSeeded && w.state != winBroken) {
		return false
	}
	w.feeding = true
	return true
}

// feedFrom tells the feeding goroutine where to read from, or that it is
// done: the window is live, or the subscription is not back yet (its
// confirmation starts a new one).
func (w *window) feedFrom() (after position, gen int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subGen != w.gen || (w.state != winSeeded && w.state != winBroken) {
		w.feeding = false
		return position{}, 0, false
	}
	return w.newest, w.gen, true
}

// stopFeeding marks the feeding goroutine gone.
func (w *window) stopFeeding() {
	w.mu.Lock()
	w.feeding = false
	w.mu.Unlock()
}

// broke records a lost subscription: until it is back and what it missed
// is read, live frames wait.
func (w *window) broke() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
	if w.state == winLive {
		w.state = winBroken
	}
}

// prepend puts entries read back from Redis in front of the oldest frame
// held, while the window has room and never dropped a frame: later resumes
// from them are then served from memory. entries are oldest first and end
// at or after base; fromStart tells that they begin at the history's
// first entry.
func (w *window) prepend(entries []*frame, fromStart bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.evicted || w.state == winCold || w.base == (position{}) {
		return
	}
	r := w.ring.Load()
	i := len(entries) - 1
	for i >= 0 && !entries[i].pos.less(w.base) {
		i--
	}
	put := 0
	for ; i >= 0 && int(w.head.Load()-w.tail) < w.max && !w.hub.over(); i-- {
		if int(w.head.Load()-w.tail) == len(r.slots) {
			r = w.grow(r, len(r.slots)*2)
		}
		f := entries[i]
		w.tail--
		f.n = w.tail
		r.slot(f.n).Store(f)
		w.account(f, 1)
		w.base = f.pos
		put++
	}
	if i < 0 && fromStart && put > 0 {
		w.base = position{}
	}
}

// spot is where a stream continues in a window after the position it has
// seen.
type spot struct {
	n     uint64   // the next frame to deliver
	pos   position // the newest entry at or before the position, or base
	ok    bool     // n and pos are set
	wait  bool     // the window cannot tell yet
	fetch bool     // the window does not reach back that far: read Redis
	gap   bool     // the position is no entry of this history
}

// locate finds where a stream that has seen from continues. exact says
// from is an id the client holds, which must be an entry of the history;
// otherwise from is a time, and the stream continues after it.
func (w *window) locate(from position, exact bool) spot {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == winCold {
		return spot{wait: true}
	}
	zero := position{}
	if from == zero || from.less(w.base) {
		if from == zero && w.base == zero {
			return spot{n: w.tail, ok: true}
		}
		return spot{fetch: true}
	}
	if exact && w.newest.less(from) {
		// Newer than anything here: perhaps an event another replica
		// delivered first. Redis tells.
		if w.state == winLive {
			return spot{fetch: true}
		}
		return spot{wait: true}
	}
	r := w.ring.Load()
	for n := w.head.Load(); n > w.tail; n-- {
		f := r.slot(n - 1).Load()
		if f.pos == zero || from.less(f.pos) {
			continue
		}
		if f.pos == from || !exact {
			return spot{n: n, pos: f.pos, ok: true}
		}
		return w.foreign()
	}
	if from == w.base || !exact {
		return spot{n: w.tail, pos: w.base, ok: true}
	}
	return w.foreign()
}

// foreign answers an id that falls between entries: it never came from
// this history, so the stream gets a gap and the whole history.
func (w *window) foreign() spot {
	if w.base == (position{}) {
		return spot{n: w.tail, ok: true, gap: true}
	}
	return spot{fetch: true, gap: true}
}

// behind reports whether the window holds every entry after p, and
// otherwise returns its base.
func (w *window) behind(p position) (position, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.base, !p.less(w.base)
}
