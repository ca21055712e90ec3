package ginsse

import (
	"encoding/json"
	"io"
	"time"
)

// maxBatch bounds how many frames one step writes before it flushes
// (follow flushes after each wake-up) and lets the others have a turn.
const maxBatch = 64

// phase is what a stream is doing in one of its channels.
type phase int

const (
	phaseLive   phase = iota // following the window
	phaseLocate              // finding its start in the window
	phaseFetch               // waiting for, then writing, history read from Redis
)

// cursor is a stream's place in one channel. Only the stream's goroutine
// touches it, after the hub set next and joined.
type cursor struct {
	phase  phase
	next   uint64 // the next frame of the window to deliver
	joined uint64 // the window's head when the stream joined
	// joinState is the window's state when the stream joined.
	joinState winState
	pos       position // the newest history entry delivered, or the start
	floor     position // entries up to it are not delivered (a start in time)
	from      position // while locating: the position to start after
	exact     bool     // from is a client's id
	gap       bool     // a gap event is owed
	req       *fetchReq
	segAt     int // frames of req.seg written
}

// delivery writes one stream's channels to its client.
type delivery struct {
	streamWriter
	st     *stream
	idSent bool   // with history: the client holds an id of the stream's positions
	buf    []byte // scratch for id lines
}

// start sets where each channel begins: at the window's head for a fresh
// stream (the hub set it when the stream joined), or at the client's
// Last-Event-ID. A fresh stream on a channel whose window is not live yet
// starts at the newest entry the window knows, or, before Redis answered,
// at the time it opened (less a second for clock skew).
func (d *delivery) start(res resume, opened time.Time) {
	if d.s.opts.History == 0 {
		d.idSent = true
		return
	}
	for i := range d.st.members {
		m := &d.st.members[i]
		switch {
		case res.given:
			m.phase, m.from, m.exact, m.gap = phaseLocate, res.pos[i], !res.gap, res.gap
			m.pos = m.from
		default:
			switch m.joinState {
			case winLive, winBroken:
				// Live frames after the head the stream joined at are
				// its own; pos is the newest entry before it.
			case winSeeded:
				m.phase, m.from, m.floor = phaseLocate, m.pos, m.pos
			default:
				t := position{ms: uint64(opened.Add(-time.Second).UnixMilli())}
				m.phase, m.from, m.floor, m.pos = phaseLocate, t, t, position{}
			}
		}
	}
}

// step writes what the stream's channels have for it, up to maxBatch
// frames, and wakes the stream again if more is waiting.
func (d *delivery) step(out io.Writer) bool {
	budget := maxBatch
	more, settled := false, true
	for i := range d.st.members {
		m := &d.st.members[i]
		ok, pending := d.advance(out, i, m, &budget)
		if !ok {
			return false
		}
		more = more || pending
		settled = settled && m.phase == phaseLive
	}
	if settled && !d.idSent {
		// Even a client that saw no event yet resumes from where its
		// channels are now.
		d.idSent = true
		d.buf = append(d.appendID(d.buf[:0]), '\n')
		if !d.write(out, d.buf) {
			return false
		}
	}
	if n := maxBatch - budget; n > 0 {
		d.s.delivered.Add(int64(n)) // a heartbeat's step, on every stream at once, adds nothing
	}
	if more {
		d.st.notify()
	}
	return true
}

// advance moves one channel on. It reports false when the stream must
// end, and pending when it has more to write than budget allowed.
func (d *delivery) advance(out io.Writer, i int, m *member, budget *int) (ok, pending bool) {
	for {
		switch m.phase {
		case phaseLocate:
			if !d.locate(out, i, m) {
				return d.err == nil, false
			}
		case phaseFetch:
			if !m.req.done.Load() {
				return true, false
			}
			if ok, pending := d.writeFetched(out, i, m, budget); !ok || pending {
				return ok, pending
			}
		default:
			return d.follow(out, i, m, budget)
		}
	}
}

// locate finds where channel i continues in its window, or asks Redis for
// what the window does not hold. It reports whether the phase changed.
func (d *delivery) locate(out io.Writer, i int, m *member) bool {
	sp := m.t.win.locate(m.from, m.exact)
	switch {
	case sp.wait:
		return false // the window wakes the stream when it knows more
	case sp.fetch:
		r := &fetchReq{from: m.from, exact: m.exact, gap: m.gap, st: d.st}
		if sp.gap {
			r.from, r.exact, r.gap = position{}, false, true
		}
		m.req, m.segAt, m.gap = r, 0, false
		m.phase = phaseFetch
		d.s.requestFetch(m.t, r)
		return true
	}
	if (sp.gap || m.gap) && !d.writeGap(out, i) {
		return false
	}
	m.gap = false
	m.next, m.phase = sp.n, phaseLive
	m.joined = max(m.joined, m.t.win.head.Load()) // frames before it are the replay
	if m.exact || m.pos.less(sp.pos) || sp.gap {
		m.pos = sp.pos
	}
	return true
}

// writeFetched writes the frames read from Redis for channel i, then goes
// back to the window.
func (d *delivery) writeFetched(out io.Writer, i int, m *member, budget *int) (ok, pending bool) {
	r := m.req
	if r.gap {
		if !d.writeGap(out, i) {
			return false, false
		}
		r.gap, m.pos = false, position{}
	}
	frames := r.seg[r.start:]
	for ; m.segAt < len(frames); m.segAt++ {
		if *budget == 0 {
			return true, true
		}
		f := frames[m.segAt]
		if !m.pos.less(f.pos) || !m.floor.less(f.pos) {
			continue
		}
		if !d.writeFrame(out, i, m, f) {
			return false, false
		}
		d.s.replayed.Add(1)
		*budget--
	}
	m.req = nil
	// Back to the window from the newest entry written. If the window
	// moved on meanwhile (a slow reader), locate asks Redis again from
	// that entry: only Redis can say it is gone, and then the next round
	// owes the gap. The window having moved proves nothing.
	m.phase, m.from, m.exact = phaseLocate, m.pos, m.pos != (position{})
	return true, false
}

// follow writes channel i's window from the cursor on.
func (d *delivery) follow(out io.Writer, i int, m *member, budget *int) (ok, pending bool) {
	w := &m.t.win
	for *budget > 0 {
		f := w.at(m.next)
		if f == nil {
			if m.next >= w.head.Load() {
				return true, false // caught up
			}
			// The window dropped frames this stream had not written.
			if d.s.opts.History == 0 {
				d.err = errFellBehind
				return false, false
			}
			m.phase, m.from, m.exact = phaseLocate, m.pos, m.pos != (position{})
			return true, true
		}
		m.next++
		if f.pos != (position{}) && (!m.pos.less(f.pos) || !m.floor.less(f.pos)) {
			continue // written already, or from before the stream's start
		}
		if !d.writeFrame(out, i, m, f) {
			return false, false
		}
		if f.n < m.joined {
			d.s.replayed.Add(1)
		} else if f.at > 0 {
			d.s.lag.observe(d.now.UnixMilli() - f.at)
		}
		*budget--
	}
	return true, w.head.Load() > m.next
}

// writeFrame writes one frame of channel i. With history on, the id line
// holds the stream's position in every channel.
func (d *delivery) writeFrame(out io.Writer, i int, m *member, f *frame) bool {
	if d.s.opts.History == 0 {
		return d.write(out, f.b)
	}
	if f.pos == (position{}) {
		// Outside history: no id, so the client's Last-Event-ID stays a
		// position.
		return d.write(out, f.b[:f.idAt]) && d.write(out, f.b[f.idEnd:])
	}
	m.pos = f.pos
	d.idSent = true // the client's Last-Event-ID is a position now
	if len(d.st.members) == 1 {
		return d.write(out, f.b)
	}
	d.buf = d.appendID(d.buf[:0])
	return d.write(out, f.b[:f.idAt]) && d.write(out, d.buf) && d.write(out, f.b[f.idEnd:])
}

// appendID appends the id line of the stream's positions.
func (d *delivery) appendID(b []byte) []byte {
	b = append(b, "id: "...)
	for i := range d.st.members {
		if i > 0 {
			b = append(b, ',')
		}
		b = d.st.members[i].pos.append(b)
	}
	return append(b, '\n')
}

// writeGap tells the client that channel i's history cannot cover what it
// missed.
func (d *delivery) writeGap(out io.Writer, i int) bool {
	data, _ := json.Marshal(map[string][]string{"channels": {d.chans[i]}})
	e := event{typ: gapEvent, data: string(data), retry: -1}
	return d.write(out, appendFrame(nil, &e))
}
