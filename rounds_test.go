package ginsse

import (
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bareSender is enough of a Sender for a rounds queue: its goroutines and
// its quit signal.
func bareSender() *Sender {
	return &Sender{quit: make(chan struct{}), log: slog.New(slog.DiscardHandler)}
}

func newJobs(n int) []*job {
	jobs := make([]*job, n)
	for i := range jobs {
		jobs[i] = &job{t: &topic{name: "c" + strconv.Itoa(i)}}
	}
	return jobs
}

// Jobs that arrive while a round runs go together in the next round, up
// to maxRound each; none is run twice or left out.
func TestRoundsGatherWhatArrivesDuringARound(t *testing.T) {
	s := bareSender()
	started, release := make(chan struct{}), make(chan struct{})
	var sizes []int
	seen := map[*job]int{}
	q := newRounds(s, func(jobs []*job) ([]*job, []*job, error) {
		sizes = append(sizes, len(jobs))
		for _, j := range jobs {
			seen[j]++
		}
		if len(sizes) == 1 {
			close(started)
			<-release
		}
		return nil, nil, nil
	}, func(*job) { t.Error("a job was dropped") })
	first := newJobs(1)
	q.push(first...)
	<-started
	rest := newJobs(600)
	for _, j := range rest {
		q.push(j) // one at a time, as streams arrive
	}
	close(release)
	s.wg.Wait()
	assert.Equal(t, []int{1, maxRound, maxRound, 600 - 2*maxRound}, sizes)
	for _, j := range append(first, rest...) {
		assert.Equal(t, 1, seen[j])
	}
}

// A job whose round failed is retried after a backoff that doubles up to
// a second, in a queue of its own, so that a job arriving meanwhile runs
// at once; a failed job whose channel lost its last stream is dropped,
// not run again; and the Sender's close drops what still waits.
func TestRoundsRetryFailuresApartAndDropWhatNoOneWants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := bareSender()
		jobs := newJobs(3)
		stuck, late, gone := jobs[0], jobs[1], jobs[2]
		var mu sync.Mutex // the queues' goroutines write, the test reads
		ran := map[*job][]time.Duration{}
		var dropped []*job
		start := time.Now()
		q := newRounds(s, func(batch []*job) (again, failed []*job, err error) {
			mu.Lock()
			defer mu.Unlock()
			for _, j := range batch {
				ran[j] = append(ran[j], time.Since(start))
				if j != late {
					failed, err = append(failed, j), errors.New("redis: connection refused")
				}
			}
			return nil, failed, err
		}, func(j *job) {
			mu.Lock()
			dropped = append(dropped, j)
			mu.Unlock()
		})

		q.push(stuck)
		synctest.Wait() // stuck failed, then failed its first retry, and waits
		q.push(late)
		q.push(gone)
		synctest.Wait() // late ran; gone failed and waits behind stuck's backoff
		gone.t.left.Store(true)
		time.Sleep(6 * time.Second)
		synctest.Wait()

		mu.Lock()
		assert.Equal(t, []time.Duration{0}, ran[late], "no wait behind a failing channel")
		assert.Equal(t, []time.Duration{0}, ran[gone], "not run again once its channel is gone")
		assert.Equal(t, []*job{gone}, dropped)
		r := ran[stuck]
		require.Greater(t, len(r), 7)
		assert.Equal(t, []time.Duration{0, 0, 50 * time.Millisecond, 150 * time.Millisecond, 350 * time.Millisecond}, r[:5])
		assert.Equal(t, time.Second, r[len(r)-1]-r[len(r)-2], "waits stop doubling at a second")
		mu.Unlock()

		close(s.quit)
		s.wg.Wait()
		assert.Equal(t, []*job{gone, stuck}, dropped, "what still waits is dropped on close")
	})
}

// A job that shared a round with a failing one and wants another page
// runs again at once in its own queue; only the failing job goes to the
// retry queue and waits out its backoff.
func TestRoundsRetryOnlyTheJobsThatFailed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := bareSender()
		jobs := newJobs(2)
		paged, failing := jobs[0], jobs[1]
		var mu sync.Mutex // the queues' goroutines write, the test reads
		ran := map[*job][]time.Duration{}
		start := time.Now()
		q := newRounds(s, func(batch []*job) (again, failed []*job, err error) {
			mu.Lock()
			defer mu.Unlock()
			for _, j := range batch {
				ran[j] = append(ran[j], time.Since(start))
				switch {
				case j == failing && len(ran[j]) < 3:
					failed, err = append(failed, j), errors.New("redis: i/o timeout")
				case j == paged && len(ran[j]) < 3:
					again = append(again, j) // another page to read
				}
			}
			return again, failed, err
		}, func(*job) { t.Error("a job was dropped") })
		q.push(paged, failing)
		time.Sleep(time.Second)
		synctest.Wait()
		mu.Lock()
		assert.Equal(t, []time.Duration{0, 0, 0}, ran[paged], "its pages do not wait for the failing job's backoff")
		assert.Equal(t, []time.Duration{0, 0, 50 * time.Millisecond}, ran[failing])
		mu.Unlock()
		close(s.quit)
		s.wg.Wait()
	})
}
