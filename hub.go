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
	t           *topic   // the topic it was published to
}

// newFrame encodes e once for every stream. With history on, pos is the
// event's history position, or zero for an event that bypassed history.
func newFrame(e *event, pos position) *frame {
	f := &frame{pos: pos}
	f.b, f.idAt, f.idEnd = appendFrameID(nil, e)
	return f
}

// hub fans frames out to the local streams of each Redis channel. It never
// blocks on a stream: a stream whose queue is full is closed instead.
type hub struct {
	mu      sync.RWMutex
	topics  map[string]*topic // by Redis channel name
	pending map[string]int    // SUBSCRIBEs sent and not yet confirmed, by name
	// Counts for Stats, kept as atomics so reading them takes no lock.
	streams, channels atomic.Int64
	slow              atomic.Int64 // streams closed for falling behind
}

// topic is the set of local streams on one Redis channel.
type topic struct {
	name  string
	subs  []*member
	ready chan struct{} // closed once Redis confirmed the subscription
	done  bool          // ready is closed
	sent  bool          // a SUBSCRIBE for this topic went out
}

// member is one stream's place in one topic, kept so that leaving is O(1).
type member struct {
	st  *stream
	t   *topic
	idx int
}

func newHub() *hub {
	return &hub{topics: make(map[string]*topic), pending: make(map[string]int)}
}

// add puts st into the topic of every name and returns the topics that are
// new, which the caller must subscribe.
func (h *hub) add(st *stream, names []string) (fresh []*topic) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.streams.Add(1)
	st.members = make([]member, len(names))
	for i, name := range names {
		t := h.topics[name]
		if t == nil {
			t = &topic{name: name, ready: make(chan struct{})}
			h.topics[name] = t
			fresh = append(fresh, t)
		}
		m := &st.members[i]
		*m = member{st: st, t: t, idx: len(t.subs)}
		t.subs = append(t.subs, m)
	}
	h.channels.Store(int64(len(h.topics)))
	return fresh
}

// remove takes st out of its topics and returns the names no stream uses
// any more, which the caller must unsubscribe.
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
	return h.topics[name] == nil
}

// wanted returns the names some stream still uses.
func (h *hub) wanted(names []string) []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []string
	for _, name := range names {
		if h.topics[name] != nil {
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
// last SUBSCRIBE sent for its name is confirmed. Confirmations nobody
// waits for (those of a resubscribe after a reconnect) change nothing.
func (h *hub) confirm(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.pending[name]; n > 1 {
		h.pending[name] = n - 1
		return
	}
	delete(h.pending, name)
	if t := h.topics[name]; t != nil && t.sent && !t.done {
		t.done = true
		close(t.ready)
	}
}

// reset forgets outstanding SUBSCRIBEs after the subscription connection
// was lost: the reconnect subscribes every wanted channel again, once.
func (h *hub) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.pending)
	for name, t := range h.topics {
		if t.sent && !t.done {
			h.pending[name] = 1
		}
	}
}

// publish offers f to every local stream of the channel name.
func (h *hub) publish(name string, f *frame) {
	h.mu.RLock()
	if t := h.topics[name]; t != nil {
		f.t = t
		for _, m := range t.subs {
			if m.st.offer(f) {
				h.slow.Add(1)
			}
		}
	}
	h.mu.RUnlock()
}

// counts returns the open streams and subscribed channels.
func (h *hub) counts() (streams, channels int) {
	return int(h.streams.Load()), int(h.channels.Load())
}

// stream is the per-client state the hub knows about: a bounded queue of
// shared frames and a way to close the stream from outside.
type stream struct {
	queue   chan *frame
	kill    chan struct{} // closed when the stream must end
	killed  atomic.Bool
	members []member
	// With history on, a full queue does not close the stream: it marks
	// it lagging, and the stream catches up from the history.
	catchUp bool
	lagging atomic.Bool
}

func newStream(queue int, catchUp bool) *stream {
	return &stream{queue: make(chan *frame, queue), kill: make(chan struct{}), catchUp: catchUp}
}

// index returns the place of t among the stream's channels, or -1.
func (st *stream) index(t *topic) int {
	for i := range st.members {
		if st.members[i].t == t {
			return i
		}
	}
	return -1
}

// offer queues f without blocking. A full queue means the client cannot
// keep up: the stream is closed, and offer reports true the one time it
// closed it; or, with history on, the stream is marked lagging.
func (st *stream) offer(f *frame) (closed bool) {
	select {
	case st.queue <- f:
		return false
	default:
		if st.catchUp {
			st.lagging.Store(true)
			return false
		}
		return st.close()
	}
}

// close ends the stream; it is safe to call more than once.
func (st *stream) close() bool {
	if st.killed.CompareAndSwap(false, true) {
		close(st.kill)
		return true
	}
	return false
}
