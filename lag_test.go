package ginsse

import (
	"testing"
	"time"
)

func TestLagHistogramBuckets(t *testing.T) {
	var h lagHistogram
	for _, ms := range []int64{-5, 0, 1, 2, 3, 10, 11, 9000, 60000} {
		h.observe(ms)
	}
	s := h.snapshot()
	want := map[time.Duration]int64{time.Millisecond: 3, 2 * time.Millisecond: 1, 5 * time.Millisecond: 1,
		10 * time.Millisecond: 1, 25 * time.Millisecond: 1, 10 * time.Second: 1}
	for i, b := range s.Bounds {
		if s.Counts[i] != want[b] {
			t.Errorf("bucket ≤%v: %d, want %d", b, s.Counts[i], want[b])
		}
	}
	if s.Counts[len(s.Bounds)] != 1 {
		t.Errorf("above the last bound: %d, want 1", s.Counts[len(s.Bounds)])
	}
	if s.Count != 9 || s.Sum != (0+0+1+2+3+10+11+9000+60000)*time.Millisecond {
		t.Errorf("count %d sum %v", s.Count, s.Sum)
	}
	if q := s.Quantile(0.5); q != 5*time.Millisecond {
		t.Errorf("p50 %v, want 5ms", q)
	}
	if q := s.Quantile(0.99); q != 10*time.Second {
		t.Errorf("p99 %v, want the last bound", q)
	}
	if q := (LagHistogram{}).Quantile(0.5); q != 0 {
		t.Errorf("empty p50 %v", q)
	}
}
