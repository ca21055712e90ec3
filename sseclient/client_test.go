package sseclient_test

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEventsReconnectWithLastEventID(t *testing.T) {
	srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
		switch n {
		case 0:
			stream(w, "retry: 10\nid: 1\ndata: a\n\n", "data: b\n\n") // then ends
		case 1:
			stream(w, "id: 2\ndata: c\n\n", "id\ndata: d\n\n") // "id" with no value resets it
		default:
			stream(w, "data: e\n\n")
			hold(r)
		}
	})
	st := newStates()
	c := newClient(t, srv.URL, sseclient.Options{Header: http.Header{"Authorization": {"Bearer x"}}, OnState: st.record})
	assert.Equal(t, sseclient.Closed, c.State(), "a new Client is closed")

	got, err := collect(testContext(t), c, 5)
	require.NoError(t, err)
	assert.Equal(t, []sseclient.Event{
		{Type: "message", Data: "a", ID: "1", Retry: 10 * time.Millisecond},
		ev("message", "b", "1"),
		ev("message", "c", "2"),
		ev("message", "d", ""),
		ev("message", "e", ""),
	}, got)

	reqs := srv.seen()
	require.Len(t, reqs, 3)
	assert.NotContains(t, reqs[0].header, "Last-Event-Id", "no id yet: no header")
	assert.Equal(t, "1", reqs[1].header.Get("Last-Event-ID"))
	assert.NotContains(t, reqs[2].header, "Last-Event-Id", "an empty id sends no header")
	for _, r := range reqs {
		assert.Equal(t, "text/event-stream", r.header.Get("Accept"))
		assert.Equal(t, "no-cache", r.header.Get("Cache-Control"))
		assert.Equal(t, "Bearer x", r.header.Get("Authorization"))
	}

	assert.Equal(t, 2, <-srv.gone, "breaking out of the loop closed the stream")
	assert.Equal(t, sseclient.Closed, c.State())
	assert.NoError(t, c.Err(), "a break is no error")
	assert.Equal(t, []string{"connecting", "open", "reconnecting", "open", "reconnecting", "open", "closed"}, st.names())
	for _, ch := range st.list() {
		if ch.State == sseclient.Reconnecting {
			assert.ErrorIs(t, ch.Err, sseclient.ErrEnded)
			assert.GreaterOrEqual(t, ch.Delay, 10*time.Millisecond, "the server's retry")
		}
	}
}

// refusals are the answers a browser's EventSource gives up on.
var refusals = []struct {
	name        string
	status      int
	contentType string
	is          error
}{
	{"204", http.StatusNoContent, "", sseclient.ErrStatus},
	{"401", http.StatusUnauthorized, "application/json", sseclient.ErrStatus},
	{"404", http.StatusNotFound, "text/plain", sseclient.ErrStatus},
	{"500", http.StatusInternalServerError, "text/event-stream", sseclient.ErrStatus},
	{"503", http.StatusServiceUnavailable, "application/json", sseclient.ErrStatus},
	{"text/plain", http.StatusOK, "text/plain", sseclient.ErrContentType},
	{"no content type", http.StatusOK, "", sseclient.ErrContentType},
	{"a look-alike", http.StatusOK, "text/event-streams", sseclient.ErrContentType},
}

func refuse(w http.ResponseWriter, status int, contentType string) {
	w.Header()["Content-Type"] = []string{contentType} // an empty one stops net/http from sniffing
	if contentType == "" {
		w.Header()["Content-Type"] = nil
	}
	w.WriteHeader(status)
	if status != http.StatusNoContent {
		_, _ = w.Write([]byte("data: not a stream\n\n"))
	}
}

func TestEventsStopOnRefusal(t *testing.T) {
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
				refuse(w, tc.status, tc.contentType)
			})
			c := newClient(t, srv.URL, sseclient.Options{Retry: time.Millisecond})
			got, err := collect(testContext(t), c, 1)
			assert.Empty(t, got)
			require.ErrorIs(t, err, tc.is)
			var re *sseclient.ResponseError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, tc.status, re.StatusCode)
			if tc.status != http.StatusNoContent {
				assert.Equal(t, "data: not a stream\n\n", re.Body, "the body is kept for the reason")
				assert.True(t, strings.HasSuffix(err.Error(), ": data: not a stream"), "on one line: %q", err.Error())
			}
			assert.Len(t, srv.seen(), 1, "no retry")
			assert.Equal(t, sseclient.Closed, c.State())
			assert.Equal(t, err, c.Err())
		})
	}
}

func TestEventsKeepRetrying(t *testing.T) {
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
				if n < 2 {
					refuse(w, tc.status, tc.contentType)
					return
				}
				stream(w, "data: at last\n\n")
				hold(r)
			})
			st := newStates()
			c := newClient(t, srv.URL, sseclient.Options{Retry: time.Millisecond, MaxBackoff: 5 * time.Millisecond, KeepRetrying: true, OnState: st.record})
			got, err := collect(testContext(t), c, 1)
			require.NoError(t, err)
			assert.Equal(t, "at last", got[0].Data)
			assert.Len(t, srv.seen(), 3)
			assert.Equal(t, []string{"connecting", "reconnecting", "reconnecting", "open", "closed"}, st.names())
			assert.ErrorIs(t, st.list()[1].Err, tc.is)
		})
	}
}

func TestEventsContentTypeParameters(t *testing.T) {
	for _, ct := range []string{"text/event-stream; charset=utf-8", "Text/Event-Stream", "text/event-stream;charset=UTF-8 "} {
		srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Content-Type", ct)
			_, _ = w.Write([]byte("data: ok\n\n"))
		})
		got, err := collect(testContext(t), newClient(t, srv.URL, sseclient.Options{}), 1)
		require.NoError(t, err, ct)
		assert.Equal(t, "ok", got[0].Data, ct)
	}
}

func TestEventsEventTooLarge(t *testing.T) {
	srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
		stream(w, "data: small\n\n", "data: 0123456789\n\n")
		hold(r)
	})
	c := newClient(t, srv.URL, sseclient.Options{MaxEventSize: 8, Retry: time.Millisecond})
	got, err := collect(testContext(t), c, 2)
	require.ErrorIs(t, err, sseclient.ErrEventTooLarge)
	assert.Equal(t, []sseclient.Event{ev("message", "small", "")}, got)
	assert.Len(t, srv.seen(), 1)
	assert.Equal(t, 0, <-srv.gone)
}

func TestEventsCancelLeavesNothingBehind(t *testing.T) {
	srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
		stream(w, ": ok\n\n")
		hold(r)
	})
	transport := &http.Transport{}
	st := newStates()
	c := newClient(t, srv.URL, sseclient.Options{HTTPClient: &http.Client{Transport: transport}, OnState: st.record})
	base := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := collect(ctx, c, 1)
		done <- err
	}()
	st.waitOpen(t)
	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled, "the last value says why the loop ended")
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not end when its context did")
	}
	assert.Equal(t, 0, <-srv.gone, "the stream was closed")
	assert.Equal(t, sseclient.Closed, c.State())
	assert.ErrorIs(t, c.Err(), context.Canceled)
	transport.CloseIdleConnections()
	requireGoroutinesSettle(t, base)
}

func TestEventsCancelWhileWaitingToReconnect(t *testing.T) {
	srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
		stream(w, "data: once\n\n")
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClient(t, srv.URL, sseclient.Options{Retry: time.Hour, MaxBackoff: time.Hour, OnState: func(ch sseclient.StateChange) {
		if ch.State == sseclient.Reconnecting {
			cancel()
		}
	}})
	start := time.Now()
	got, err := collect(ctx, c, 2)
	assert.Len(t, got, 1)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 5*time.Second, "the wait ended with the context")
}

func TestEventsRunsOneLoopAtATime(t *testing.T) {
	srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
		stream(w, "data: a\n\n")
		hold(r)
	})
	st := newStates()
	c := newClient(t, srv.URL, sseclient.Options{OnState: st.record})
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = collect(ctx, c, 100)
	}()
	st.waitOpen(t)
	_, err := collect(testContext(t), c, 1)
	assert.ErrorIs(t, err, sseclient.ErrBusy)
	cancel()
	<-done

	got, err := collect(testContext(t), c, 1)
	require.NoError(t, err, "a loop may run again once the last one ended")
	assert.Equal(t, "a", got[0].Data)
}

func TestEventsWhenTheServerIsDown(t *testing.T) {
	srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {})
	url := srv.URL
	srv.Close() // nothing listens there now
	var errs []error
	ctx, cancel := context.WithCancel(testContext(t))
	c := newClient(t, url, sseclient.Options{Retry: time.Millisecond, MaxBackoff: 2 * time.Millisecond, OnState: func(ch sseclient.StateChange) {
		if ch.State == sseclient.Reconnecting {
			if errs = append(errs, ch.Err); len(errs) == 3 {
				cancel()
			}
		}
	}})
	_, err := collect(ctx, c, 1)
	assert.ErrorIs(t, err, context.Canceled, "network errors are retried, not yielded")
	require.Len(t, errs, 3)
	for _, e := range errs {
		assert.Error(t, e)
		assert.False(t, errors.Is(e, sseclient.ErrStatus))
	}
}

func TestNewRefusesWhatCannotWork(t *testing.T) {
	for name, tc := range map[string]struct {
		url  string
		opts sseclient.Options
	}{
		"no scheme":           {"localhost:8080/stream", sseclient.Options{}},
		"not http":            {"ftp://localhost/stream", sseclient.Options{}},
		"unparsable":          {"http://[::1", sseclient.Options{}},
		"client timeout":      {"http://localhost/", sseclient.Options{HTTPClient: &http.Client{Timeout: time.Minute}}},
		"negative retry":      {"http://localhost/", sseclient.Options{Retry: -time.Second}},
		"backoff below retry": {"http://localhost/", sseclient.Options{Retry: time.Minute, MaxBackoff: time.Second}},
		"negative size":       {"http://localhost/", sseclient.Options{MaxEventSize: -1}},
		"negative idle":       {"http://localhost/", sseclient.Options{IdleTimeout: -1}},
		"unsendable id":       {"http://localhost/", sseclient.Options{LastEventID: "7\n8"}},
	} {
		_, err := sseclient.New(tc.url, tc.opts)
		assert.ErrorIs(t, err, sseclient.ErrInvalidOptions, name)
	}
	_, err := sseclient.New("https://localhost/stream", sseclient.Options{Retry: time.Minute})
	assert.NoError(t, err, "MaxBackoff defaults to at least Retry")
}

// A stream that goes quiet past IdleTimeout is dropped and resumed; one
// whose heartbeats keep coming is not.
func TestEventsIdleTimeout(t *testing.T) {
	srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 {
			stream(w, "id: 1\ndata: a\n\n") // then silence
		} else {
			stream(w, "data: b\n\n")
		}
		hold(r)
	})
	st := newStates()
	c := newClient(t, srv.URL, sseclient.Options{Retry: time.Millisecond, IdleTimeout: 100 * time.Millisecond, OnState: st.record})
	got, err := collect(testContext(t), c, 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, []string{got[0].Data, got[1].Data})
	assert.Equal(t, 0, <-srv.gone, "the quiet stream was dropped")
	assert.ErrorIs(t, st.list()[2].Err, sseclient.ErrIdle)
	assert.Equal(t, "1", srv.seen()[1].header.Get("Last-Event-ID"), "and resumed")

	beating := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
		stream(w, ": ok\n\n")
		for range 10 { // 300ms, three times the IdleTimeout
			select {
			case <-time.After(30 * time.Millisecond):
				stream(w, ": heartbeat\n\n")
			case <-r.Context().Done():
				return
			}
		}
		stream(w, "data: still here\n\n")
		hold(r)
	})
	c = newClient(t, beating.URL, sseclient.Options{IdleTimeout: 100 * time.Millisecond})
	got, err = collect(testContext(t), c, 1)
	require.NoError(t, err)
	assert.Equal(t, "still here", got[0].Data)
	assert.Len(t, beating.seen(), 1, "heartbeats keep a stream alive")
}

// A loop body slower than IdleTimeout is not the stream's silence.
func TestEventsIdleTimeoutIgnoresASlowBody(t *testing.T) {
	srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
		stream(w, "data: a\n\n")
		time.Sleep(20 * time.Millisecond) // b comes in its own read, while the body works on a
		stream(w, "data: b\n\n")
		hold(r)
	})
	c := newClient(t, srv.URL, sseclient.Options{IdleTimeout: 50 * time.Millisecond})
	var got []string
	for e, err := range c.Events(testContext(t)) {
		require.NoError(t, err)
		if got = append(got, e.Data); len(got) == 2 {
			break
		}
		time.Sleep(200 * time.Millisecond) // the application's slow work on an event
	}
	assert.Equal(t, []string{"a", "b"}, got)
	assert.Len(t, srv.seen(), 1, "no reconnect")
}

// An id that no header can carry is not sent back, so the Client
// reconnects (afresh) instead of failing every attempt.
func TestEventsUnsendableLastEventID(t *testing.T) {
	srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 {
			stream(w, "id: 7\x01\ndata: a\n\n")
			return
		}
		stream(w, "data: b\n\n")
		hold(r)
	})
	c := newClient(t, srv.URL, sseclient.Options{Retry: time.Millisecond})
	got, err := collect(testContext(t), c, 2)
	require.NoError(t, err)
	assert.Equal(t, "7\x01", got[0].ID, "the id is the stream's, as in a browser")
	assert.Equal(t, "b", got[1].Data)
	assert.Len(t, srv.seen(), 2)
	assert.NotContains(t, srv.seen()[1].header, "Last-Event-Id")
}

func TestResponseErrorMessageIsOneLine(t *testing.T) {
	err := &sseclient.ResponseError{StatusCode: 400, Body: "{\"error\":\"bad\nchannel\"}\n" + strings.Repeat("x", 300)}
	msg := err.Error()
	assert.True(t, strings.HasPrefix(msg, `sseclient: unexpected status: 400 Bad Request: {"error":"bad channel"} xxx`), msg)
	assert.NotContains(t, msg, "\n")
	assert.Less(t, len(msg), 300, "the body is cut short")
}

func TestStateString(t *testing.T) {
	assert.Equal(t, "closed", sseclient.State(0).String(), "the zero State")
	assert.Equal(t, "State(9)", sseclient.State(9).String())
}
