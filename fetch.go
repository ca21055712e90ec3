package ginsse

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
)

// A fetcher reads from Redis, once for all of a channel's streams, the
// history their window does not reach back to: after a reconnect storm,
// thousands of resumes cost a few reads per channel instead of one each.
// One goroutine per channel serves the requests in rounds: each round
// reads from the oldest position asked for up to where the window takes
// over, and hands the same frames to every request of the round.
type fetcher struct {
	mu      sync.Mutex
	waiting []*fetchReq
	running bool
}

// fetchReq is one stream's request, and its answer once done is set.
type fetchReq struct {
	from  position // the position the stream has seen; zero: from the start
	exact bool     // from must be an entry (a client's id), else a gap
	gap   bool     // the stream gets a gap event first
	st    *stream  // woken when the answer is in
	done  atomic.Bool
	seg   []*frame // the history from the round's oldest position, shared
	start int      // the first frame of seg after from
}

// requestFetch queues r on t's fetcher, starting its goroutine if none
// runs.
func (s *Sender) requestFetch(t *topic, r *fetchReq) {
	f := &t.fetch
	f.mu.Lock()
	f.waiting = append(f.waiting, r)
	start := !f.running
	f.running = true
	f.mu.Unlock()
	if start && !s.goOwned(func() { s.runFetch(t) }) {
		f.mu.Lock()
		f.running = false
		f.mu.Unlock()
	}
}

// runFetch serves rounds until no request waits.
func (s *Sender) runFetch(t *topic) {
	f := &t.fetch
	for {
		f.mu.Lock()
		batch := f.waiting
		f.waiting = nil
		if len(batch) == 0 {
			f.running = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		if !s.serveRound(t, batch) {
			f.mu.Lock()
			f.running = false
			f.mu.Unlock()
			return // the channel or the Sender is gone; so are its streams
		}
	}
}

// serveRound reads once for batch and answers each request. A request
// whose id turned out to be no entry is queued again, for the whole
// history.
func (s *Sender) serveRound(t *topic, batch []*fetchReq) bool {
	from := batch[0].from
	for _, r := range batch[1:] {
		if r.from.less(from) {
			from = r.from
		}
	}
	base, _ := t.win.behind(from)
	seg, end, ok := s.readSpan(t, from)
	if !ok {
		return false
	}
	fromStart := from == position{}
	var last position
	if len(seg) > 0 {
		last = seg[len(seg)-1].pos
	}
	if end {
		t.win.lostBefore(from, last, base)
	}
	t.win.prepend(seg, fromStart)
	// Requests that came while the round read are served by it too when
	// it reached back far enough for them.
	batch = append(batch, t.fetch.join(from)...)
	var again []*fetchReq
	for _, r := range batch {
		i, found := slices.BinarySearchFunc(seg, r.from, func(f *frame, p position) int { return f.pos.compare(p) })
		switch {
		case r.from == position{}:
			r.start = 0
		case found:
			r.start = i + 1
		case r.from != from && last.less(r.from):
			again = append(again, r) // past this round: a round of its own
			continue
		case !r.exact:
			r.start = i
		case fromStart:
			r.gap, r.start = true, 0
		default:
			// Not an entry: older than the history, or never one. Either
			// way the stream gets a gap and everything retained.
			r.from, r.exact, r.gap = position{}, false, true
			again = append(again, r)
			continue
		}
		r.seg = seg
		r.done.Store(true)
		r.st.notify()
	}
	if len(again) > 0 {
		t.fetch.mu.Lock()
		t.fetch.waiting = append(t.fetch.waiting, again...)
		t.fetch.mu.Unlock()
	}
	return true
}

// join takes the waiting requests that a round read from from covers.
func (f *fetcher) join(from position) []*fetchReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	var joined []*fetchReq
	kept := f.waiting[:0]
	for _, r := range f.waiting {
		if !r.from.less(from) {
			joined = append(joined, r)
		} else {
			kept = append(kept, r)
		}
	}
	f.waiting = kept
	return joined
}

// readSpan reads the history of t from from, inclusive (zero: from the
// start), a page at a time, until it reaches what the window holds or,
// as end reports, the end of the history. It retries while Redis fails,
// and reports false when the channel or the Sender went away first.
func (s *Sender) readSpan(t *topic, from position) (seg []*frame, end, ok bool) {
	inclusive := true
	for {
		var page []*frame
		var full bool
		if !s.persist(t, func(ctx context.Context) (err error) {
			page, full, err = s.pageFrom(ctx, t.name, from, inclusive)
			return err
		}) {
			return nil, false, false
		}
		seg = append(seg, page...)
		if !full {
			return seg, true, true
		}
		if len(seg) > s.opts.History+replayPage {
			return seg, false, true
		}
		from, inclusive = page[len(page)-1].pos, false
		if _, ok := t.win.behind(from); ok {
			return seg, false, true
		}
	}
}
