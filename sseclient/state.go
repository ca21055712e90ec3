package sseclient

import (
	"fmt"
	"time"
)

// State is where a Client is in its life, as an EventSource's readyState
// with reconnecting told apart from the first connection.
type State int32

// The states of a Client. The zero State is Closed: a new Client is closed
// until Events starts it.
const (
	// Closed: Events is not running. Client.Err tells why it stopped.
	Closed State = iota
	// Connecting: the first attempt of a loop is under way.
	Connecting
	// Open: a stream is being read.
	Open
	// Reconnecting: the stream broke or an attempt failed; the Client
	// waits, then tries again. Client.Err tells what broke.
	Reconnecting
)

// String returns the state's name in lower case.
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Connecting:
		return "connecting"
	case Open:
		return "open"
	case Reconnecting:
		return "reconnecting"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// StateChange is one change of a Client's state, as Options.OnState
// receives it.
type StateChange struct {
	// State is the new state.
	State State

	// Err is what broke the stream or the attempt (Reconnecting), or why
	// the Client stopped (Closed; nil after a break out of the loop).
	Err error

	// Delay is how long the Client waits before its next attempt
	// (Reconnecting only).
	Delay time.Duration
}

// setState records a change and reports it to Options.OnState.
func (c *Client) setState(ch StateChange) {
	c.mu.Lock()
	c.state, c.err = ch.State, ch.Err
	c.mu.Unlock()
	if c.opts.OnState != nil {
		c.opts.OnState(ch)
	}
}

// State returns the Client's current state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Err returns the error behind the current state: what broke the last
// attempt while Reconnecting, why the Client stopped once Closed (nil after
// a break out of the loop, or before Events first ran), nil otherwise.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
