package ginsse_test

import (
	"slices"
	"strings"
)

// The model's rules, checked per stream and channel against the history
// recorded from Redis and what Redis holds at the end. Entries leave Redis
// for good (trimmed, or lost in a restart), so an entry Redis still holds
// at the end was held all along: a stream that skipped it, or sent a gap
// for a position Redis still holds, broke the promise.
//
//  1. Every event delivered is an entry of its channel, with its id.
//  2. Positions only grow: no event twice, none out of order.
//  3. Between two events, every entry still held was delivered, gap or no
//     gap: a gap means the position was gone, then everything retained.
//  4. A gap only for a position Redis no longer holds (or never held: a
//     foreign or future id), or, for a stream with no position yet, after
//     Redis restarted empty or trimmed the entry it started from.
//  5. At rest, every stream has reached its channels' newest entry, and
//     ends only when its client leaves.

// checkAll checks every stream of the run.
func (r *modelRun) checkAll() {
	for _, ss := range r.sessions {
		r.check(ss, slices.Contains(r.open, ss))
	}
}

// check applies the rules to one stream; atRest says it was open, with
// nothing left to deliver, when the test settled.
func (r *modelRun) check(ss *session, atRest bool) {
	t := r.t
	t.Helper()
	start := ss.positions(ss.id)
	log := ss.events()
	for ci, ch := range ss.chans {
		held := r.hist.held(ch)
		var prev string // the newest position delivered, or resumed from
		var known bool  // prev came from the stream or the client's id
		soft := ""      // a fresh stream's start: entries after it are owed
		if start != nil {
			prev, known = start[ci], true
		} else if ss.kind == idNone && ss.id == "" {
			soft = r.newestAt(ch, ss)
		}
		gapped := false
		for _, o := range log {
			if o.gap != nil {
				if !slices.Contains(o.gap, ch) {
					continue
				}
				pos := prev
				if p := ss.positions(o.id); p != nil {
					pos = p[ci]
				}
				switch {
				case pos != "" && held[pos]:
					t.Errorf("stream %v (id %q): gap on %s at %s, which Redis still holds", ss.chans, ss.id, ch, pos)
				case pos == "" && ss.id == "" && r.hist.wipes == ss.wipes && !r.trimmedBy(ch, r.newestAt(ch, ss), held):
					t.Errorf("stream %v: gap on %s before any position, with no Redis restart", ss.chans, ch)
				}
				prev, known, gapped = "", false, true
				continue
			}
			if !strings.HasPrefix(o.data, "tok:"+ch+":") {
				continue
			}
			tok := o.data[:strings.IndexByte(o.data, '|')]
			p := ss.positions(o.id)
			if p == nil {
				t.Errorf("stream %v: event %s came with id %q, not one position per channel", ss.chans, tok, o.id)
				continue
			}
			e, ok := r.hist.byID(ch, p[ci])
			if !ok || e.tok != tok {
				t.Errorf("stream %v: event %s with id %s is no entry of %s (entry %+v)", ss.chans, tok, p[ci], ch, e)
				continue
			}
			if prev != "" && !posLessStr(prev, e.id) {
				if known || prev != soft {
					t.Errorf("stream %v (id %q): %s at %s after %s: repeated or out of order", ss.chans, ss.id, tok, e.id, prev)
				}
			}
			from := prev
			if from == "" && !known && !gapped {
				from = soft
			}
			if from != "" || gapped {
				r.owed(ss, ch, from, e.id, held)
			}
			prev, known, gapped, soft = e.id, true, false, ""
		}
		if atRest {
			rec := r.hist.entries[ch]
			if len(rec) > 0 && held[rec[len(rec)-1].id] {
				newest := rec[len(rec)-1].id
				if prev != newest {
					t.Errorf("stream %v (id %q): at rest on %s at %q, not at the newest entry %s", ss.chans, ss.id, ch, prev, newest)
				}
			}
		}
	}
	ss.mu.Lock()
	ended := ss.ended
	ss.mu.Unlock()
	if atRest && ended != nil && !ss.closing.Load() {
		t.Errorf("stream %v ended by itself: %v", ss.chans, ended)
	}
}

// owed reports the entries of ch after from (zero: from the start) and
// before to that Redis still holds: the stream skipped them.
func (r *modelRun) owed(ss *session, ch, from, to string, held map[string]bool) {
	for _, e := range r.hist.entries[ch] {
		if from != "" && !posLessStr(from, e.id) {
			continue
		}
		if !posLessStr(e.id, to) {
			break
		}
		if held[e.id] {
			r.t.Errorf("stream %v (id %q): skipped %s %s, between %q and %s, though Redis holds it", ss.chans, ss.id, e.tok, e.id, from, to)
		}
	}
}

// trimmedBy reports whether Redis dropped an entry of ch at or before
// to: a fresh stream starts at the newest entry its window knew, which may
// be that old, and gets a gap when it reads it back after Redis trimmed it.
func (r *modelRun) trimmedBy(ch, to string, held map[string]bool) bool {
	for _, e := range r.hist.entries[ch] {
		if to == "" || posLessStr(to, e.id) {
			return false
		}
		if !held[e.id] {
			return true
		}
	}
	return false
}

// newestAt is the newest entry of ch recorded when the stream opened:
// every entry after it is the stream's to deliver.
func (r *modelRun) newestAt(ch string, ss *session) string {
	return ss.newest[ch]
}

func posLessStr(a, b string) bool {
	pa, _ := parsePos(a)
	pb, _ := parsePos(b)
	return posLess(pa, pb)
}
