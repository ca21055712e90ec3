package ginsse

import (
	"slices"
	"sync/atomic"
	"time"
)

// lagBounds are the upper bounds of the delivery lag histogram's buckets,
// in whole milliseconds as the times it compares are; a last bucket holds
// what is above them.
var lagBounds = [...]time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// lagBoundsMs are lagBounds in milliseconds, for the hot path.
var lagBoundsMs = func() (ms [len(lagBounds)]int64) {
	for i, b := range lagBounds {
		ms[i] = b.Milliseconds()
	}
	return ms
}()

// lagHistogram counts delivery lags, the time from an event's publish to
// its write to a client, with atomics: no lock and no allocation per
// event.
type lagHistogram struct {
	counts [len(lagBounds) + 1]atomic.Int64
	sumMs  atomic.Int64
}

// observe records one delivery lag in milliseconds. Clocks disagree: a
// lag below zero counts as zero.
func (h *lagHistogram) observe(ms int64) {
	ms = max(ms, 0)
	i := 0
	for i < len(lagBoundsMs) && ms > lagBoundsMs[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumMs.Add(ms)
}

// LagHistogram is the delivery lag of a Sender's live events: the time from
// the publish to the write to the client, in buckets. With History on, the
// publish time is the event's history position, stamped by Redis's clock;
// without, it is the time the publishing Sender put in the message with
// Options.StampTime, by its own clock (messages without one are not
// counted). So the figures are as good as the clocks' agreement; a lag
// below zero counts as zero. Replayed events are not counted.
type LagHistogram struct {
	// Bounds are the buckets' upper bounds; Counts has one more, for the
	// lags above the last bound.
	Bounds []time.Duration
	Counts []int64
	Count  int64
	Sum    time.Duration
}

func (h *lagHistogram) snapshot() LagHistogram {
	out := LagHistogram{Bounds: slices.Clone(lagBounds[:]), Counts: make([]int64, len(h.counts))}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
		out.Count += out.Counts[i]
	}
	out.Sum = time.Duration(h.sumMs.Load()) * time.Millisecond
	return out
}

// Quantile returns the upper bound of the bucket that holds quantile q
// (0 to 1) of the lags; 0 when none was counted, and the last bound for
// lags above it.
func (h LagHistogram) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	rank := int64(q * float64(h.Count))
	var seen int64
	for i, n := range h.Counts {
		seen += n
		if seen > rank {
			return h.Bounds[min(i, len(h.Bounds)-1)]
		}
	}
	return h.Bounds[len(h.Bounds)-1]
}
