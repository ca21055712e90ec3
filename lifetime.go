package ginsse

import (
	"context"
	"math/rand/v2"
	"time"
)

// lifetime is how long one stream may live: its deadline, the reason it
// would end there, and the Options.Refresh call in flight, if any. Only
// the stream's goroutine uses it.
type lifetime struct {
	s        *Sender
	id       Identity
	rotateAt time.Time // zero: no MaxStreamAge
	dl       *deadline // nil: none
	noMore   bool      // a refresh failed: the stream ends at ExpiresAt
	askAfter time.Time // Refresh is asked at most once per Timeout
	answer   chan refreshAnswer
	cancel   context.CancelFunc
}

type refreshAnswer struct {
	at  time.Time
	err error
}

// newLifetime schedules the deadline of a stream opened at opened for id.
// MaxStreamAge is spread over its last quarter so that streams opened
// together do not all end together.
func (s *Sender) newLifetime(id Identity, opened time.Time) *lifetime {
	l := &lifetime{s: s, id: id}
	if age := s.opts.MaxStreamAge; age > 0 {
		spread := time.Duration(rand.Int64N(int64(age/4) + 1))
		l.rotateAt = opened.Add(age - spread)
	}
	l.schedule()
	return l
}

// schedule sets the deadline to the earliest of rotation, expiry, and —
// with Options.Refresh — the time to ask it, Options.Timeout before
// expiry so that its answer comes before the stream would have to end.
func (l *lifetime) schedule() {
	if l.dl != nil {
		l.s.ends.remove(l.dl)
		l.dl = nil
	}
	at, reason := l.rotateAt, endRotated
	if exp := l.id.ExpiresAt; !exp.IsZero() {
		ask, why := exp, endExpired
		if l.s.opts.Refresh != nil && !l.noMore {
			at := exp.Add(-l.s.opts.Timeout)
			if at.Before(l.askAfter) {
				at = l.askAfter
			}
			if at.Before(exp) {
				ask, why = at, refreshDue
			}
		}
		if at.IsZero() || ask.Before(at) {
			at, reason = ask, why
		}
	}
	if at.IsZero() {
		return
	}
	l.dl = &deadline{at: at, reason: reason, due: make(chan struct{})}
	l.s.ends.add(l.dl)
}

// due is ready when the deadline passed; nil, never ready, without one.
func (l *lifetime) due() <-chan struct{} {
	if l.dl == nil {
		return nil
	}
	return l.dl.due
}

// refreshed is ready when Options.Refresh answered.
func (l *lifetime) refreshed() <-chan refreshAnswer { return l.answer }

// passed handles the deadline: it returns why the stream ends now, or ""
// when it asked Options.Refresh instead, in a goroutine the stream owns.
func (l *lifetime) passed() string {
	dl := l.dl
	l.dl = nil
	if dl.reason != refreshDue {
		if l.answer != nil {
			l.cancel() // no answer in time; stop waits for the goroutine
		}
		return dl.reason
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.s.opts.Timeout)
	l.cancel = cancel
	l.answer = make(chan refreshAnswer, 1)
	id := l.id
	id.Tags = append([]string(nil), id.Tags...)
	go func(answer chan<- refreshAnswer) {
		at, err := l.s.opts.Refresh(ctx, id)
		answer <- refreshAnswer{at, err}
	}(l.answer)
	// Without an answer by then the stream ends at ExpiresAt.
	l.dl = &deadline{at: l.id.ExpiresAt, reason: endExpired, due: make(chan struct{})}
	l.s.ends.add(l.dl)
	return ""
}

// settle takes Options.Refresh's answer: a later ExpiresAt, or, on an
// error or a time that is not later, the end at the ExpiresAt the stream
// had. It returns why the stream ends now, or "".
func (l *lifetime) settle(a refreshAnswer) string {
	l.cancel()
	l.answer, l.cancel = nil, nil
	switch {
	case a.err != nil:
		l.s.log.Warn("ginsse: identity refresh failed; the stream ends at its expiry", "user", l.id.User, "err", a.err)
		l.noMore = true
	case !a.at.After(l.id.ExpiresAt):
		l.noMore = true
	default:
		l.id.ExpiresAt = a.at
		l.s.refreshes.Add(1)
		// An answer that extends the stream by little must not have
		// Refresh asked again at once, in a loop.
		l.askAfter = time.Now().Add(l.s.opts.Timeout)
	}
	if l.noMore && !time.Now().Before(l.id.ExpiresAt) {
		return endExpired
	}
	l.schedule()
	return ""
}

// stop releases the deadline and cancels a refresh in flight, waiting up
// to Options.Timeout for it to return: a Refresh that ignores its context
// must not keep the stream, and what it holds, open. Its goroutine ends
// when it returns, its answer buffered.
func (l *lifetime) stop() {
	if l.dl != nil {
		l.s.ends.remove(l.dl)
	}
	if l.answer != nil {
		l.cancel()
		select {
		case <-l.answer:
		case <-time.After(l.s.opts.Timeout):
			l.s.log.Warn("ginsse: Options.Refresh ignored its cancelled context", "user", l.id.User)
		}
	}
}
