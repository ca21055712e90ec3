package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func postTo(t *testing.T, srv *httptest.Server, path string, form url.Values) (int, string) {
	t.Helper()
	resp, err := http.PostForm(srv.URL+path, form)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// replica is one demo server on a shared Redis.
func replica(t *testing.T, mr *miniredis.Miniredis) *httptest.Server {
	sender, err := ginsse.New(ginsse.Options{Addr: mr.Addr(), History: 100, Presence: true,
		RetryMin: 50 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	require.NoError(t, err)
	srv := httptest.NewServer(newRouter(sender, demoRevocations(t, mr), "letmein", 0))
	t.Cleanup(func() { sender.Close(); srv.CloseClientConnections(); srv.Close() })
	return srv
}

// streamUntilEnd runs a Client on u and returns what it stopped with, and
// how many times it opened: it reconnects after a Disconnect as a browser
// does, and stops at the guard's 403.
func streamUntilEnd(t *testing.T, u string, opened chan<- struct{}) (int, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	opens := 0
	c, err := sseclient.New(u, sseclient.Options{OnState: func(s sseclient.StateChange) {
		if s.State == sseclient.Open {
			opens++
			opened <- struct{}{}
		}
	}})
	require.NoError(t, err)
	for _, err := range c.Events(ctx) {
		if err != nil {
			return opens, err
		}
	}
	return opens, nil
}

func TestRevokeRefusesInvalidInput(t *testing.T) {
	srv, _ := newDemo(t, 0)
	for _, form := range []url.Values{
		{},
		{"user": {"a b"}},
		{"user": {"ada"}, "channel": {"bad channel"}},
		{"user": {"ada"}, "reconnect": {"maybe"}},
	} {
		for _, path := range []string{"/revoke", "/grant"} {
			code, body := postTo(t, srv, path, form)
			assert.Equal(t, http.StatusBadRequest, code, "%s %v", path, form)
			assert.Contains(t, body, `"error"`)
		}
	}
}

// A revocation through replica B ends the user's stream on replica A; the
// browser comes back, meets the guard's 403 on either replica, and is
// let in again after /grant.
func TestRevokeAcrossReplicasThenTheGuardRefuses(t *testing.T) {
	mr := miniredis.RunT(t)
	a, b := replica(t, mr), replica(t, mr)
	opened := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() {
		_, err := streamUntilEnd(t, a.URL+"/stream?user=ada", opened)
		done <- err
	}()
	<-opened
	other := connectAs(t, a.URL+"/stream?user=bob")

	code, body := postTo(t, b, "/revoke", url.Values{"user": {"ada"}})
	require.Equal(t, http.StatusAccepted, code, body)
	select {
	case err := <-done:
		assert.Equal(t, http.StatusForbidden, status(t, err), "the browser came back and the guard refused it")
	case <-time.After(10 * time.Second):
		t.Fatal("the stream on replica A was not ended")
	}
	assert.Equal(t, http.StatusForbidden, status(t, connect(t, b.URL+"/stream?user=ada", nil)))
	assert.Equal(t, http.StatusOK, status(t, connect(t, a.URL+"/stream?user=bob", nil)))
	select {
	case <-other:
		t.Fatal("bob's stream ended")
	default:
	}

	code, body = postTo(t, a, "/grant", url.Values{"user": {"ada"}})
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, http.StatusOK, status(t, connect(t, b.URL+"/stream?user=ada", nil)))
}

// connectAs opens a stream and returns a channel closed when it ends.
func connectAs(t *testing.T, u string) <-chan struct{} {
	ended := make(chan struct{})
	opened := make(chan struct{}, 10)
	go func() {
		defer close(ended)
		_, _ = streamUntilEnd(t, u, opened)
	}()
	<-opened
	return ended
}

// A revocation on one channel ends only the streams holding it.
func TestRevokeOneChannel(t *testing.T) {
	mr := miniredis.RunT(t)
	srv := replica(t, mr)
	news := connectAs(t, srv.URL+"/stream?user=ada&channel=news")
	sse := connectAs(t, srv.URL+"/stream?user=ada")
	code, body := postTo(t, srv, "/revoke", url.Values{"user": {"ada"}, "channel": {"news"}})
	require.Equal(t, http.StatusAccepted, code, body)
	select {
	case <-news:
	case <-time.After(10 * time.Second):
		t.Fatal("the news stream was not ended")
	}
	select {
	case <-sse:
		t.Fatal("the sse stream ended")
	case <-time.After(200 * time.Millisecond):
	}
	assert.Equal(t, http.StatusForbidden, status(t, connect(t, srv.URL+"/stream?user=ada&channel=news&channel=sse", nil)))
	assert.Equal(t, http.StatusOK, status(t, connect(t, srv.URL+"/stream?user=ada&channel=sse", nil)))
}

// reconnect=false tells the client to stop: sseclient obeys.
func TestRevokeWithoutReconnect(t *testing.T) {
	mr := miniredis.RunT(t)
	srv := replica(t, mr)
	opened := make(chan struct{}, 10)
	done := make(chan error, 1)
	var opens int
	go func() {
		var err error
		opens, err = streamUntilEnd(t, srv.URL+"/stream?user=ada", opened)
		done <- err
	}()
	<-opened
	code, body := postTo(t, srv, "/revoke", url.Values{"user": {"ada"}, "reconnect": {"false"}})
	require.Equal(t, http.StatusAccepted, code, body)
	select {
	case err := <-done:
		require.ErrorIs(t, err, sseclient.ErrDisconnected)
		assert.Equal(t, 1, opens)
	case <-time.After(10 * time.Second):
		t.Fatal("the stream was not ended")
	}
}

func getJSON(t *testing.T, u string, v any) int {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
	}
	return resp.StatusCode
}

type presenceAnswer struct {
	Channel string   `json:"channel"`
	Users   []string `json:"users"`
	Streams int      `json:"streams"`
}

// GET /presence answers who is on a channel on every replica, behind the
// stream's guards.
func TestPresenceRoute(t *testing.T) {
	mr := miniredis.RunT(t)
	a, b := replica(t, mr), replica(t, mr)
	connectAs(t, a.URL+"/stream?user=ann&channel=room")
	connectAs(t, b.URL+"/stream?user=bob&channel=room")
	connectAs(t, b.URL+"/stream?channel=room")
	want := presenceAnswer{Channel: "room", Users: []string{"ann", "bob"}, Streams: 3}
	require.Eventually(t, func() bool {
		var got presenceAnswer
		return getJSON(t, a.URL+"/presence?channel=room", &got) == http.StatusOK && assert.ObjectsAreEqual(want, got)
	}, 10*time.Second, 20*time.Millisecond)
	var empty presenceAnswer
	require.Equal(t, http.StatusOK, getJSON(t, b.URL+"/presence?channel=empty", &empty))
	assert.Equal(t, presenceAnswer{Channel: "empty", Users: []string{}}, empty)

	for _, q := range []string{"channel=bad%20channel", "channel=a&channel=b", "user=a*b&channel=room"} {
		assert.Equal(t, http.StatusBadRequest, getJSON(t, a.URL+"/presence?"+q, nil), q)
	}
	assert.Equal(t, http.StatusForbidden, getJSON(t, a.URL+"/presence?channel=firehose", nil), "the firehose guard")
	assert.Equal(t, http.StatusOK, getJSON(t, a.URL+"/presence?channel=firehose&token=letmein", nil))
	code, _ := postTo(t, a, "/revoke", url.Values{"user": {"ann"}, "channel": {"room"}})
	require.Equal(t, http.StatusAccepted, code)
	assert.Equal(t, http.StatusForbidden, getJSON(t, a.URL+"/presence?channel=room&user=ann", nil), "a revoked user")
}
