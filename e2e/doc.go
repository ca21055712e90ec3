// Package e2e holds the end-to-end tests: the demo in _example run as its
// own program, and read by the clients users have. Headless Chromium
// checks the page, the stream and the browser's own EventSource together;
// the npm eventsource package under Node.js (e2e/npm) and sseclient follow
// the same streams beside it and are held to what the browser does. It
// has no code of its own.
package e2e
