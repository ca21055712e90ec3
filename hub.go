package ginsse

import (
	"sync"
	"sync/atomic"
)

// frame is one encoded event, shared read-only by every stream it goes to.
type frame struct {
	b           []byte
	idAt, idEnd int      // b[idAt:idEnd] is the id line, empty when none
	pos         position // history position; zero outside history
	n           uint64   // its number in its channel's window
	at          int64    // when it was published, Unix ms; 0 when unknown
}

// newFrame encodes e once for every stream. With history on, pos is the
// event's history position, or zero for an event that bypassed history.
func newFrame(e *event, pos position) *frame {
	f := &frame{pos: pos, at: e.at}
	if pos != (position{}) {
		f.at = int64(pos.ms)
	}
	f.b, f.idAt, f.idEnd = appendFrameID(nil, e)
	return f
}

// hub fans frames out to the local streams of each Redis channel. It never
// blocks on a stream: a frame goes into its channel's window once, and
// every stream of the channel is woken to read it at its own pace.
type hub struct {
	mu      sync.RWMutex
	topics  map[string]*topic // by Redis channel name
	pending map[string]int    // SUBSCRIBEs sent and not yet confirmed, by name
	// Counts for Stats, kept as atomics so reading them takes no lock.
	streams, channels atomic.Int64
	slow              atomic.Int64 // streams closed for falling behind

	control string // the control channel: always wanted, never a topic

	history bool // windows follow a Redis history
	frames  int  // most frames a window holds
	floor   int  // frames a window keeps over the byte budget
	budget  windowBudget
}

// topic is the set of local streams on one Redis channel, and the
// channel's window.
type topic struct {
	name  string
	subs  []*member
	ready chan struct{} // closed once Redis confirmed the subscription
	done  bool          // ready is closed
	sent  bool          // a SUBSCRIBE for this topic went out
	left  atomic.Bool   // no stream uses it any more
	win   window
	fetch fetcher // history reads for streams the window does not cover
}

// member is one stream's place in one topic, kept so that leaving is O(1).
type member struct {
	st  *stream
	t   *topic
	idx int
	cursor
}

func newHub(history bool, frames, floor int, budget int64) *hub {
	h := &hub{topics: make(map[string]*topic), pending: make(map[string]int), history: history, frames: frames, floor: floor}
	h.budget.limit = budget
	return h
}

// add puts st into the topic of every name and returns the topics that are
// new, which the caller must subscribe. Each member's cursor starts at the
// head of its window.
func (h *hub) add(st *stream, names []string) (fresh []*topic) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.streams.Add(1)
	st.members = make([]member, len(names))
	for i, name := range names {
		t := h.topics[name]
		if t == nil {
			t = &topic{name: name, ready: make(chan struct{})}
			t.win.init(h.frames, h.floor, &h.budget, h.history)
			h.topics[name] = t
			fresh = append(fresh, t)
		}
		m := &st.members[i]
		*m = member{st: st, t: t, idx: len(t.subs)}
		m.join(&t.win)
		t.subs = append(t.subs, m)
	}
	h.channels.Store(int64(len(h.topics)))
	return fresh
}

// remove takes st out of its topics and returns the names no stream uses
// any more, which the caller must unsubscribe. Their windows are released.
func (h *hub) remove(st *stream) (empty []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.streams.Add(-1)
	for i := range st.members {
		m := &st.members[i]
		t := m.t
		last := len(t.subs) - 1
		t.subs[m.idx] = t.subs[last]
		t.subs[m.idx].idx = m.idx
		t.subs[last] = nil
		t.subs = t.subs[:last]
		if len(t.subs) == 0 && h.topics[t.name] == t {
			delete(h.topics, t.name)
			t.left.Store(true)
			t.win.release()
			empty = append(empty, t.name)
		}
	}
	st.members = nil
	h.channels.Store(int64(len(h.topics)))
	return empty
}

// current reports whether t is still the topic for its name; a topic that
// lost all its streams before its SUBSCRIBE went out is not.
func (h *hub) current(t *topic) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.topics[t.name] == t
}

// unused reports whether no stream wants name.
func (h *hub) unused(name string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.topics[name] == nil && name != h.control
}

// wanted returns the names some stream still uses.
func (h *hub) wanted(names []string) []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []string
	for _, name := range names {
		if h.topics[name] != nil || name == h.control {
			out = append(out, name)
		}
	}
	return out
}

// sent records that a SUBSCRIBE for name is on its way.
func (h *hub) sent(t *topic) {
	h.mu.Lock()
	t.sent = true
	h.pending[t.name]++
	h.mu.Unlock()
}

// unsent undoes sent for SUBSCRIBEs that failed to go out.
func (h *hub) unsent(names []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, name := range names {
		if h.pending[name] > 1 {
			h.pending[name]--
		} else {
			delete(h.pending, name)
		}
	}
}

// confirm handles Redis's confirmation of a SUBSCRIBE. Confirmations come
// back in the order the commands went out, so the topic is ready once the
// last SUBSCRIBE sent for its name is confirmed. With history on, it
// returns the topic when its window must now read from Redis what the
// live feed did not bring: the events between the window's newest and the
// subscription.
func (h *hub) confirm(name string) (repair *topic) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.pending[name]
	if n > 1 {
		h.pending[name] = n - 1
		return nil
	}
	delete(h.pending, name)
	t := h.topics[name]
	if t == nil || !t.sent {
		return nil
	}
	switch {
	case !t.done:
		t.done = true
		close(t.ready)
		h.wake(t)
	case n == 0 && h.history:
		// No SUBSCRIBE of ours is out: go-redis reconnected on its own
		// (a SUBSCRIBE or PING met a dead connection) and subscribed
		// again, so the live feed has a hole the loop reading it never
		// saw as an error. The window reads it back like any loss.
		t.win.broke()
	}
	if h.history && t.win.confirmed() {
		return t
	}
	return nil
}

// reset forgets outstanding SUBSCRIBEs after the subscription connection
// of names was lost: the reconnect subscribes every wanted channel again,
// once. History windows stop taking live frames until they have read what
// the subscription missed.
func (h *hub) reset(names []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, name := range names {
		if t := h.topics[name]; t != nil {
			h.lost(t)
		}
	}
}

// resetAll is reset for every channel: the one connection of plain
// pub/sub was lost.
func (h *hub) resetAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.pending)
	for _, t := range h.topics {
		h.lost(t)
	}
}

func (h *hub) lost(t *topic) {
	if t.sent && !t.done {
		h.pending[t.name] = 1
	} else {
		delete(h.pending, t.name)
	}
	if h.history {
		t.win.broke()
	}
}

// publish offers f to the window of the channel name and wakes its
// streams.
func (h *hub) publish(name string, f *frame) {
	h.mu.RLock()
	if t := h.topics[name]; t != nil && t.win.offer(f) {
		h.wake(t)
	}
	h.mu.RUnlock()
}

// wake tells every stream of t that something changed. The caller holds
// mu, read or write.
func (h *hub) wake(t *topic) {
	for _, m := range t.subs {
		m.st.notify()
	}
}

// wakeTopic is wake for callers that hold no lock.
func (h *hub) wakeTopic(t *topic) {
	h.mu.RLock()
	h.wake(t)
	h.mu.RUnlock()
}

// counts returns the open streams and subscribed channels.
func (h *hub) counts() (streams, channels int) {
	return int(h.streams.Load()), int(h.channels.Load())
}

// join starts the cursor at the window's head. The caller holds the hub's
// lock, so no live frame goes in meanwhile.
func (m *member) join(w *window) {
	w.mu.Lock()
	m.next, m.joinState, m.pos = w.head.Load(), w.state, w.newest
	w.mu.Unlock()
	m.joined = m.next
}

// stream is the per-client state the hub knows about: a wake-up signal
// and its place in each channel.
type stream struct {
	wake    chan struct{} // holds a token when something changed
	members []member
	// signals holds what woke the stream besides its channels: a
	// heartbeat or a command. They share the wake channel because an idle
	// stream holds a runtime record per channel it waits on, tens of
	// thousands of times over.
	signals atomic.Uint32
}

// The signals a stream takes from its wake channel.
const (
	sigBeat   uint32 = 1 << iota // a heartbeat is due
	sigRevoke                    // a command ended the stream
	sigFinal                     // with sigRevoke: the command said NoReconnect
)

func newStream() *stream {
	return &stream{wake: make(chan struct{}, 1)}
}

// raise records sig and wakes the stream.
func (st *stream) raise(sig uint32) {
	st.signals.Or(sig)
	st.notify()
}

// notify wakes the stream without blocking; a token already waiting
// covers this change too.
func (st *stream) notify() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}
