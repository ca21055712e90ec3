package ginsse

// The replay side of a history window: how it is filled from Redis, kept
// contiguous across lost subscriptions, and searched by resuming streams.

// seed fills a cold window with the newest entries of the history, oldest
// first; whole tells that they are all the history holds.
func (w *window) seed(entries []*frame, whole bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range entries {
		w.push(f)
	}
	// Entries before the first are not held; neither are those the
	// pushes dropped when ReplayMemory was short, which moved base past
	// it already.
	if !whole && len(entries) > 0 && w.base.less(entries[0].pos) {
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

// feedFrom tells the window's feed job where to read from, or that it is
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

// stopFeeding marks the window's feed job gone.
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
	if w.released || w.evicted || w.state == winCold || w.base == (position{}) {
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
			return spot{n: w.tail}
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
			return spot{n: n, pos: f.pos}
		}
		return w.foreign()
	}
	if from == w.base || !exact {
		return spot{n: w.tail, pos: w.base}
	}
	return w.foreign()
}

// foreign answers an id that falls between entries: it never came from
// this history, so the stream gets a gap and the whole history.
func (w *window) foreign() spot {
	if w.base == (position{}) {
		return spot{n: w.tail, gap: true}
	}
	return spot{fetch: true, gap: true}
}

// lostBefore takes in a read from from that reached the end of the
// history, whose newest entry was last (zero: none), and base, the
// window's base when the read began. Only a read that started at or
// before that base tells, and only against it: the window goes on taking
// live entries while the read is out, so its base then may be newer than
// anything Redis had to give. If Redis's newest entry was older than an
// entry the window held before the read, Redis no longer holds what the
// window does — it restarted without persistence — so nothing older than
// the window is left to read: the window now stands for the whole
// history. Without this a stream before base would ask Redis again,
// forever, for entries Redis says it does not have.
func (w *window) lostBefore(from, last, base position) {
	w.mu.Lock()
	defer w.mu.Unlock()
	zero := position{}
	if w.state != winCold && w.base != zero && base != zero && !base.less(from) && last.less(base) {
		w.base = zero
	}
}

// behind reports whether the window holds every entry after p, and
// returns its base.
func (w *window) behind(p position) (position, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.base, !p.less(w.base)
}
