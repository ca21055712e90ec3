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
	q := newRounds(s, func(jobs []*job) ([]*job, error) {
		sizes = append(sizes, len(jobs))
		for _, j := range jobs {
			seen[j]++
		}
		if len(sizes) == 1 {
			close(started)
			<-release
		}
		return nil, nil
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

// A job whose round failed runs again after a backoff, together with what
// arrived meanwhile; a job whose channel lost its last stream is dropped,
// not run; and the Sender's close drops what still waits.
func TestRoundsRetryFailuresAndDropWhatNoOneWants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := bareSender()
		jobs := newJobs(4)
		failing, gone, late, stuck := jobs[0], jobs[1], jobs[2], jobs[3]
		var mu sync.Mutex // the queue's goroutine writes, the test reads
		var rounds [][]*job
		var at []time.Duration
		start := time.Now()
		var dropped []*job
		q := newRounds(s, func(batch []*job) (again []*job, err error) {
			mu.Lock()
			defer mu.Unlock()
			rounds = append(rounds, batch)
			at = append(at, time.Since(start))
			for _, j := range batch {
				if j == stuck || (j == failing && len(rounds) == 1) {
					again, err = append(again, j), errors.New("redis: connection refused")
				}
			}
			return again, err
		}, func(j *job) {
			mu.Lock()
			dropped = append(dropped, j)
			mu.Unlock()
		})

		q.push(failing)
		synctest.Wait()           // the first round ran; failing waits out its backoff
		q.push(gone, late, stuck) // they arrive during the backoff
		gone.t.left.Store(true)
		time.Sleep(time.Second)
		synctest.Wait()
		mu.Lock()
		require.GreaterOrEqual(t, len(rounds), 2)
		assert.Equal(t, []*job{failing}, rounds[0])
		assert.Equal(t, []*job{failing, late, stuck}, rounds[1], "the retry goes with what arrived meanwhile")
		assert.Equal(t, 50*time.Millisecond, at[1]-at[0], "after the first backoff")
		assert.Equal(t, []*job{gone}, dropped)
		mu.Unlock()

		// stuck keeps failing: its waits double up to a second.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		mu.Lock()
		n := len(rounds)
		assert.Equal(t, time.Second, at[n-1]-at[n-2])
		mu.Unlock()
		close(s.quit)
		s.wg.Wait()
		assert.Equal(t, []*job{gone, stuck}, dropped, "what still waits is dropped on close")
	})
}
