package main

import (
	"sync/atomic"
	"time"
)

// histogram counts latencies in 100 µs buckets up to 30 s: quantiles
// without keeping a sample per delivery.
type histogram struct {
	buckets     []atomic.Int64
	count       atomic.Int64
	first, last atomic.Int64 // delivery times, unix ns
	maxNanos    atomic.Int64
}

const bucketWidth = 100 * time.Microsecond

func newHistogram() *histogram {
	return &histogram{buckets: make([]atomic.Int64, int(30*time.Second/bucketWidth)+1)}
}

func (h *histogram) record(at, latency int64) {
	i := min(max(latency, 0)/int64(bucketWidth), int64(len(h.buckets)-1))
	h.buckets[i].Add(1)
	h.count.Add(1)
	h.first.CompareAndSwap(0, at)
	for {
		last := h.last.Load()
		if at <= last || h.last.CompareAndSwap(last, at) {
			break
		}
	}
	for {
		m := h.maxNanos.Load()
		if latency <= m || h.maxNanos.CompareAndSwap(m, latency) {
			break
		}
	}
}

// quantile returns the upper edge of the bucket holding quantile q, in ms.
func (h *histogram) quantile(q float64) float64 {
	total := h.count.Load()
	if total == 0 {
		return 0
	}
	rank := int64(q * float64(total))
	var seen int64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen > rank {
			return float64(time.Duration(i+1)*bucketWidth) / float64(time.Millisecond)
		}
	}
	return h.max()
}

func (h *histogram) max() float64 {
	return float64(h.maxNanos.Load()) / float64(time.Millisecond)
}
