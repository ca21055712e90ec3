package e2e

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/require"
)

// goClient follows a stream with sseclient beside the browser, so that the
// Go client is held to what Chromium does in the same scenario.
type goClient struct {
	mu      sync.Mutex
	got     []string
	states  []sseclient.StateChange
	err     error         // what stopped the loop, if it stopped by itself
	changed chan struct{} // a new event or state
	done    chan struct{}
}

// followWithGo reads the stream at u until the test ends. MaxBackoff is
// kept short so that its reconnects stay within the test's time.
func followWithGo(t *testing.T, u string) *goClient {
	t.Helper()
	g := &goClient{changed: make(chan struct{}, 1), done: make(chan struct{})}
	c, err := sseclient.New(u, sseclient.Options{MaxBackoff: 5 * time.Second, OnState: g.state})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(g.done)
		for ev, err := range c.Events(ctx) {
			g.mu.Lock()
			if err != nil && ctx.Err() == nil {
				g.err = err
			} else if err == nil {
				g.got = append(g.got, ev.Data)
			}
			g.mu.Unlock()
			g.signal()
		}
	}()
	t.Cleanup(func() { cancel(); <-g.done })
	return g
}

func (g *goClient) state(s sseclient.StateChange) {
	g.mu.Lock()
	g.states = append(g.states, s)
	g.mu.Unlock()
	g.signal()
}

func (g *goClient) signal() {
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// events returns the data of the events so far, oldest first.
func (g *goClient) events() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.got)
}

// waitFor waits until the client has received an event with data.
func (g *goClient) waitFor(t *testing.T, data string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for !slices.Contains(g.events(), data) {
		select {
		case <-g.changed:
		case <-g.done:
			t.Fatalf("the Go client stopped before %q: %v", data, g.stopped())
		case <-timeout:
			t.Fatalf("the Go client got no %q; it has %q, states %v", data, g.events(), g.history())
		}
	}
}

// stopped is the error the client stopped with, nil while it runs.
func (g *goClient) stopped() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// history lists the client's states so far.
func (g *goClient) history() []sseclient.State {
	g.mu.Lock()
	defer g.mu.Unlock()
	var s []sseclient.State
	for _, c := range g.states {
		s = append(s, c.State)
	}
	return s
}

// opens counts the times its stream opened.
func (g *goClient) opens() int {
	n := 0
	for _, s := range g.history() {
		if s == sseclient.Open {
			n++
		}
	}
	return n
}
