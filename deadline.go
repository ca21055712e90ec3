package ginsse

import (
	"container/heap"
	"sync"
	"time"
)

// Why a stream was ended on the server's side.
const (
	endExpired = "expired" // its Identity.ExpiresAt passed
	endRotated = "rotated" // it reached Options.MaxStreamAge
	endRevoked = "revoked" // Disconnect picked it
	refreshDue = "refresh" // not an end: Options.Refresh is to be asked
)

// deadlines ends streams at their deadlines with one timer for all of
// them: a heap ordered by time, and one goroutine that sleeps until the
// earliest. A stream costs a heap entry, not a timer, and nothing per
// event.
type deadlines struct {
	mu   sync.Mutex
	h    deadlineHeap
	wake chan struct{} // holds a token when the earliest deadline changed
}

// deadline is one stream's end: at at, for reason. idx is its place in
// the heap, -1 once it left.
type deadline struct {
	at     time.Time
	reason string
	due    chan struct{} // closed when at passed
	idx    int
}

func newDeadlines() *deadlines { return &deadlines{wake: make(chan struct{}, 1)} }

// add schedules dl.
func (d *deadlines) add(dl *deadline) {
	d.mu.Lock()
	heap.Push(&d.h, dl)
	first := dl.idx == 0
	d.mu.Unlock()
	if first {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// remove forgets dl, whose stream ended first.
func (d *deadlines) remove(dl *deadline) {
	d.mu.Lock()
	if dl.idx >= 0 {
		heap.Remove(&d.h, dl.idx)
	}
	d.mu.Unlock()
}

// expire closes the due channel of every deadline at or before now and
// returns how long until the next one (0: none left).
func (d *deadlines) expire(now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.h) > 0 && !d.h[0].at.After(now) {
		close(heap.Pop(&d.h).(*deadline).due)
	}
	if len(d.h) == 0 {
		return 0
	}
	return d.h[0].at.Sub(now)
}

// runDeadlines ends streams at their deadlines until Close.
func (s *Sender) runDeadlines() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := s.ends.expire(time.Now())
		if next == 0 {
			next = time.Hour
		}
		t.Reset(next)
		select {
		case <-s.quit:
			return
		case <-s.ends.wake:
		case <-t.C:
		}
	}
}

type deadlineHeap []*deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}

func (h *deadlineHeap) Push(x any) {
	dl := x.(*deadline)
	dl.idx = len(*h)
	*h = append(*h, dl)
}

func (h *deadlineHeap) Pop() any {
	old := *h
	dl := old[len(old)-1]
	old[len(old)-1] = nil
	dl.idx = -1
	*h = old[:len(old)-1]
	return dl
}
