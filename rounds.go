package ginsse

import "sync"

// Channels that arrive together share their round trips. In a reconnect
// storm of streams that each have a channel of their own, every channel
// is new to the Sender, and each would cost a history read, a SUBSCRIBE
// and a second history read, one after another, in a goroutine of its
// own. A rounds queue gathers the channels waiting for one of these steps
// instead; a single goroutine drains it in rounds, each round one pipeline
// or one SUBSCRIBE for every channel that waited. A lone channel goes at
// once; channels arriving during a round go together in the next.
//
// A round's failed jobs go to a second queue of the same kind, which
// retries them with a backoff in a goroutine of its own: a channel whose
// reads fail (its cluster shard is failing over, say) holds up its own
// round once, up to Options.Timeout, and never the rounds after it.
type rounds struct {
	s *Sender
	// run runs one round. The jobs it gives back wait for another: again
	// at once (a read that wants another page), failed, with why, in the
	// retry queue after a backoff.
	run     func([]*job) (again, failed []*job, err error)
	drop    func(*job) // a job no round will run
	retry   *rounds    // where failed jobs go; nil: this is that queue
	mu      sync.Mutex
	waiting []*job
	running bool
}

// job is one channel's place in a rounds queue, and where a feed job's
// read has got to.
type job struct {
	t       *topic
	started bool     // a feed job: after and gen are set
	after   position // read after this
	gen     int      // the subscription loss the read repairs
	got     []*frame // pages read so far
}

// maxRound bounds the channels of one round: a pipeline's answers are
// held in memory until the round ends.
const maxRound = 256

func newRounds(s *Sender, run func([]*job) (again, failed []*job, err error), drop func(*job)) *rounds {
	return &rounds{s: s, run: run, drop: drop, retry: &rounds{s: s, run: run, drop: drop}}
}

// push queues jobs, starting the goroutine that drains the queue if none
// runs.
func (q *rounds) push(jobs ...*job) {
	q.mu.Lock()
	q.waiting = append(q.waiting, jobs...)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start && !q.s.goOwned(q.drain) {
		q.stop()
	}
}

// drain runs rounds until no job waits or the Sender closes. The retry
// queue waits after a round with failures, doubling the wait up to a
// second while they go on (Sender.pause); it logs the first failure of a
// run of them.
func (q *rounds) drain() {
	backoff := firstBackoff
	for {
		if q.s.closed() {
			q.stop()
			return
		}
		batch := q.take()
		if batch == nil {
			return
		}
		again, failed, err := q.run(batch)
		q.requeue(again)
		switch {
		case len(failed) == 0:
			backoff = firstBackoff
		case q.retry != nil:
			q.retry.push(failed...)
		default:
			if backoff == firstBackoff {
				q.s.log.Warn("ginsse: history reads failed; retrying", "channels", len(failed), "err", err)
			}
			if !q.s.pause(&backoff, maxBackoff) {
				for _, j := range failed {
					q.drop(j)
				}
				q.stop()
				return
			}
			q.requeue(failed)
		}
	}
}

// requeue puts jobs back at the front of the queue.
func (q *rounds) requeue(jobs []*job) {
	if len(jobs) == 0 {
		return
	}
	q.mu.Lock()
	q.waiting = append(jobs, q.waiting...)
	q.mu.Unlock()
}

// take returns the next round's jobs, leaving out those whose channel lost
// its last stream, or nil, and the queue marked idle, when none waits.
func (q *rounds) take() []*job {
	q.mu.Lock()
	defer q.mu.Unlock()
	var batch []*job
	for len(batch) < maxRound && len(q.waiting) > 0 {
		j := q.waiting[0]
		q.waiting[0] = nil
		q.waiting = q.waiting[1:]
		if j.t.left.Load() {
			q.drop(j)
		} else {
			batch = append(batch, j)
		}
	}
	if len(batch) == 0 {
		q.running = false
		q.waiting = nil
	}
	return batch
}

// stop drops every waiting job and marks the queue idle; the Sender is
// closing.
func (q *rounds) stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, j := range q.waiting {
		q.drop(j)
	}
	q.waiting = nil
	q.running = false
}
