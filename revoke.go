package ginsse

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Selector picks the open streams a Disconnect ends, on every replica: a
// user's, a tag's, a channel's, or a user's or a tag's on one channel.
// Build one with User, Tag or InChannel.
type Selector struct {
	User    string `json:"user,omitempty"`
	Tag     string `json:"tag,omitempty"`
	Channel string `json:"channel,omitempty"`
}

// User selects the streams whose Identity.User is id.
func User(id string) Selector { return Selector{User: id} }

// Tag selects the streams whose Identity.Tags hold tag, such as a session
// or a tenant.
func Tag(tag string) Selector { return Selector{Tag: tag} }

// InChannel selects the streams subscribed to channel, for example after
// a permission change.
func InChannel(channel string) Selector { return Selector{Channel: channel} }

// InChannel narrows sel to the streams it selects that are subscribed to
// channel: User("42").InChannel("room:7") is user 42 on room:7 only.
func (sel Selector) InChannel(channel string) Selector {
	sel.Channel = channel
	return sel
}

// maxSelectorLen bounds a selector's user and tag.
const maxSelectorLen = 256

func (sel Selector) validate() error {
	switch {
	case sel == Selector{}:
		return fmt.Errorf("%w: it names no user, tag or channel", ErrInvalidSelector)
	case sel.User != "" && sel.Tag != "":
		return fmt.Errorf("%w: a user and a tag at once", ErrInvalidSelector)
	case len(sel.User) > maxSelectorLen || len(sel.Tag) > maxSelectorLen:
		return fmt.Errorf("%w: a user or tag is at most %d bytes", ErrInvalidSelector, maxSelectorLen)
	}
	if sel.Channel != "" {
		if err := validateChannel(sel.Channel); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidSelector, err)
		}
	}
	return nil
}

// matches reports whether sel picks the stream r.
func (sel Selector) matches(r *reach) bool {
	switch {
	case sel.User != "" && r.id.User != sel.User:
		return false
	case sel.Tag != "" && !slices.Contains(r.id.Tags, sel.Tag):
		return false
	case sel.Channel != "" && !slices.Contains(r.chans, sel.Channel):
		return false
	}
	return true
}

// DisconnectOption adjusts one Disconnect call.
type DisconnectOption func(*command)

// NoReconnect tells the page not to come back: the stream sends a
// "ginsse-disconnect" event before it ends, on which the page should close
// its EventSource (sseclient does). A page that ignores the event comes
// back after the retry hint like any other and meets the guard.
func NoReconnect() DisconnectOption {
	return func(c *command) { c.Final = true }
}

// disconnectEvent is the event a stream ended by Disconnect with
// NoReconnect sends before it ends.
const disconnectEvent = "ginsse-disconnect"

// Disconnect ends the open streams that sel picks, on every Sender sharing
// the Redis, within about a second. By default each ends with a retry
// hint: its browser comes back through the guard, which refuses it or
// lets it resume by Last-Event-ID. With NoReconnect the page is told to
// stop instead.
//
// The command is kept in Redis for an hour, so a Sender whose subscription
// is down when it is sent applies it when the subscription is back, to
// the streams open then. Disconnect returns once Redis holds the command:
// an error wrapping ErrInvalidSelector for a selector that picks nothing
// it can check, ErrUnavailable when Redis cannot be reached within
// Options.Timeout, and ErrClosed after Close. A failed Disconnect was
// perhaps applied anyway; sending it again is safe.
func (s *Sender) Disconnect(ctx context.Context, sel Selector, opts ...DisconnectOption) error {
	if err := sel.validate(); err != nil {
		return err
	}
	cmd := command{Selector: sel}
	for _, o := range opts {
		o(&cmd)
	}
	if s.closed() {
		return ErrClosed
	}
	payload, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("ginsse: disconnect: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := s.ctl.send(ctx, payload); err != nil {
		return fmt.Errorf("%w: disconnect %+v: %w", ErrUnavailable, sel, err)
	}
	return nil
}

// command is what Disconnect sends on the control channel.
type command struct {
	Selector
	Final bool   `json:"final,omitempty"` // NoReconnect
	ID    string `json:"id,omitempty"`    // its position in the control history, added by the publish script
}

// reach is what a Sender knows of one open stream so that a command can
// find it, end it, or wake it for a heartbeat or Close.
type reach struct {
	id      Identity
	chans   []string
	st      *stream
	stopped atomic.Bool // a command picked it
}

// stop ends the stream once, for the first command that picks it; final
// is the command's NoReconnect.
func (r *reach) stop(final bool) {
	if r.stopped.CompareAndSwap(false, true) {
		sig := sigRevoke
		if final {
			sig |= sigFinal
		}
		r.st.raise(sig)
	}
}

// reaches is the registry of a Sender's open streams that commands scan.
// A command is rare; a scan of tens of thousands of streams takes well
// under a millisecond, so no index is kept on the streams' path.
type reaches struct {
	mu sync.Mutex
	m  map[*reach]struct{}
}

func (rs *reaches) add(r *reach) {
	rs.mu.Lock()
	if rs.m == nil {
		rs.m = make(map[*reach]struct{})
	}
	rs.m[r] = struct{}{}
	rs.mu.Unlock()
}

func (rs *reaches) remove(r *reach) {
	rs.mu.Lock()
	delete(rs.m, r)
	rs.mu.Unlock()
}

// raise wakes every stream with sig, and returns buf (a scratch slice to
// use again) grown to the streams it woke. It holds the registry's lock
// only to list them: waking tens of thousands takes longer, and streams
// opening and closing wait on that lock. A stream that leaves meanwhile
// gets a harmless wake-up; one that arrives after the list was made wakes
// by itself once it writes its first frame.
func (rs *reaches) raise(sig uint32, buf []*stream) []*stream {
	rs.mu.Lock()
	buf = buf[:0]
	for r := range rs.m {
		buf = append(buf, r.st)
	}
	rs.mu.Unlock()
	for _, st := range buf {
		st.raise(sig)
	}
	clear(buf) // hold no stream past its end
	return buf
}

// apply ends the streams cmd picks and returns how many.
func (rs *reaches) apply(cmd *command) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	for r := range rs.m {
		if cmd.matches(r) {
			r.stop(cmd.Final)
			n++
		}
	}
	return n
}
