package ginsse

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// A seeded mix of deadlines added and removed expires exactly the ones
// left, each once, when their time passes.
func TestDeadlinesExpireInTimeOrder(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		d := newDeadlines()
		base := time.Unix(1000, 0)
		var live, all []*deadline
		for range 200 {
			dl := &deadline{at: base.Add(time.Duration(rng.IntN(1000)) * time.Millisecond), due: make(chan struct{})}
			d.add(dl)
			all = append(all, dl)
			if rng.IntN(3) == 0 {
				d.remove(dl)
			} else {
				live = append(live, dl)
			}
		}
		for now := base; now.Before(base.Add(1100 * time.Millisecond)); now = now.Add(time.Duration(rng.IntN(50)) * time.Millisecond) {
			next := d.expire(now)
			for _, dl := range all {
				closed := isClosed(dl.due)
				want := slices.Contains(live, dl) && !dl.at.After(now)
				if closed != want {
					t.Fatalf("seed %d: deadline %v at %v: closed %v, want %v", seed, dl.at, now, closed, want)
				}
			}
			if next < 0 {
				t.Fatalf("seed %d: next deadline %v in the past", seed, next)
			}
		}
		if len(d.h) != 0 {
			t.Fatalf("seed %d: %d deadlines left", seed, len(d.h))
		}
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
