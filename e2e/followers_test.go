package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/require"
)

// A follower is a client beside the browser, reading the same stream: an
// sseclient Client, or the npm eventsource package under Node.js. Each is
// held to what Chromium does in the same scenario.
type follower struct {
	name    string
	mu      sync.Mutex
	got     []string // the data of each event, oldest first
	states  []string // each state it reported: "open", "reconnecting", "closed", ...
	whys    []string // what it said with each state, if anything
	stopErr string   // why it stopped by itself, if it did
	changed chan struct{}
	done    chan struct{}
}

func newFollower(name string) *follower {
	return &follower{name: name, changed: make(chan struct{}, 1), done: make(chan struct{})}
}

func (f *follower) event(data string) { f.record(func() { f.got = append(f.got, data) }) }
func (f *follower) state(s, why string) {
	f.record(func() { f.states, f.whys = append(f.states, s), append(f.whys, why) })
}

// why is what the follower said with its first state.
func (f *follower) why() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.whys) == 0 {
		return ""
	}
	return f.whys[0]
}

// lastWhy is what the follower said with its latest state.
func (f *follower) lastWhy() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.whys) == 0 {
		return ""
	}
	return f.whys[len(f.whys)-1]
}

func (f *follower) record(change func()) {
	f.mu.Lock()
	change()
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// events returns the data of the events so far, oldest first.
func (f *follower) events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

// history lists the states so far.
func (f *follower) history() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.states)
}

// opens counts the times its stream opened.
func (f *follower) opens() int {
	n := 0
	for _, s := range f.history() {
		if s == "open" {
			n++
		}
	}
	return n
}

// waitFor waits until the follower has received an event with data.
func (f *follower) waitFor(t *testing.T, data string) {
	t.Helper()
	f.waitUntil(t, "an event "+data, func() bool { return slices.Contains(f.events(), data) })
}

// waitUntil waits until cond holds, failing the test after 30s or when
// the follower stops first.
func (f *follower) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-f.changed:
		case <-f.done:
			if cond() {
				return
			}
			t.Fatalf("%s stopped before %s: %s; events %q, states %v", f.name, what, f.stopErr, f.events(), f.history())
		case <-timeout:
			t.Fatalf("%s: no %s within 30s; events %q, states %v", f.name, what, f.events(), f.history())
		}
	}
}

// followWithGo reads the stream at u with sseclient until the test ends.
// MaxBackoff is kept short so that its reconnects stay within the test's
// time.
func followWithGo(t *testing.T, u string) *follower {
	t.Helper()
	f := newFollower("sseclient")
	c, err := sseclient.New(u, sseclient.Options{MaxBackoff: 5 * time.Second, OnState: func(s sseclient.StateChange) {
		why := ""
		if s.Err != nil {
			why = s.Err.Error()
		}
		f.state(s.State.String(), why)
	}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(f.done)
		for ev, err := range c.Events(ctx) {
			if err != nil {
				f.record(func() { f.stopErr = err.Error() })
				return
			}
			f.event(ev.Data)
		}
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

// npmDir holds the Node.js follower and its locked dependencies.
const npmDir = "npm"

// needNode returns the node binary, once the npm eventsource package is
// installed (npm ci --prefix e2e/npm). Without either the test skips,
// before it starts anything, unless GINSSE_REQUIRE_BROWSER is set.
func needNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(npmDir + "/node_modules/eventsource")
	}
	if err != nil {
		missing(t, "the npm eventsource client is not installed (needs node, then: npm ci --prefix e2e/npm): "+err.Error())
	}
	return node
}

// followWithNode reads the stream at u with the npm eventsource package
// (e2e/npm/follow.mjs), run by node, until the test ends.
func followWithNode(t *testing.T, node, u string) *follower {
	t.Helper()
	f := newFollower("npm eventsource")
	cmd := exec.Command(node, "follow.mjs", u)
	cmd.Dir = npmDir
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // closing it stops the script
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go func() {
		defer close(f.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var line struct{ Event, Data, State, Why string }
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				f.state("unreadable", sc.Text()) // a state no assertion expects
				continue
			}
			if line.Event != "" {
				f.event(line.Data)
			} else {
				f.state(line.State, line.Why)
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-f.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-f.done
		}
		_ = cmd.Wait()
	})
	return f
}
